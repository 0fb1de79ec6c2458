// Package natsauth owns who may do what on the farm's NATS server: the
// users of the controller and of each imager node, the permissions each is
// granted, the server configuration that grants them, and the credentials
// files the components connect with (--nats-creds).
//
// The controller may use the imagefarm subjects, the JetStream API, the KV
// buckets and its replies. An imager may only read its own node's
// assignments: create (with its own name and filter only, which the server
// checks against the API subject) and look up its own durable consumer,
// fetch from it, ack its messages, and receive replies on its own inbox
// prefix. It cannot publish an assignment, read another node's consumer or
// subject, or manage streams, consumers or KV buckets.
package natsauth
