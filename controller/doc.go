// Package controller will own the farm's brain: the client gRPC API, the
// scheduler (pure placement logic), dispatch of tasks over NATS JetStream and
// the job store in JetStream KV. It is built with issue 4; the API it serves
// is already fixed in proto/imagefarm/v1.
package controller
