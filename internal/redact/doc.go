// Package redact keeps secrets out of what the farm prints: help, errors
// and logs. A URL may carry a password or a token in its user info
// (nats://user:password@host, nats://TOKEN@host); URL hides it.
package redact
