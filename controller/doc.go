// Package controller owns the farm's brain: the client gRPC API, the
// scheduler (pure placement logic), dispatch of tasks over NATS JetStream and
// the job store in JetStream KV. Every change of a job, task, drive or node
// record is made by controller/core, against its tables of legal moves;
// this package's two gRPC adapters (apiServer, imagerServer) and its loops
// (placer, liveness, catalogWatcher) call it.
//
// Who may call what is decided in two steps, by interceptors: authUnary and
// authStream verify a client certificate against the farm CA (peerIdentity),
// then authorizeUnary and authorizeStream check the method's entry in policy
// (authz.go): a bearer token of at least a role for the client API (tokens,
// callToken), the node certificate alone for ImagerService.Connect.
package controller
