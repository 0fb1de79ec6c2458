// Package enroll owns the two secrets of network boot: one-time boot
// tokens, which the controller issues to the boot service for one MAC and
// which the deploy environment redeems exactly once, and the short-lived
// device credentials they are exchanged for, each bound to one device.
// Both are kept in JetStream KV buckets as the SHA-256 of the secret, never
// the secret itself. docs/netboot-security.md says what each allows.
package enroll
