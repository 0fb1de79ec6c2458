// Package scheduler owns placement: which drive of which node each job's next
// task goes to, what a submit is refused for because it can never be placed,
// and which tasks a lost node takes down with it.
//
// It is pure logic over a snapshot: no I/O, no goroutines, no clock. The
// controller builds a Farm (nodes and drives) and the list of jobs still
// running from its JetStream state, and calls Place whenever something
// changes — a submit, a hello or heartbeat, a drive inserted or pulled, a
// task finished — and on a one-second tick, then records and dispatches the
// placements it gets back. Place is deterministic: the same snapshot always
// gives the same placements, so a restarted controller plans what the old one
// would have planned.
//
// The rules Place keeps, whatever the jobs ask:
//
//   - at most one task per drive, across all jobs;
//   - only drives of ONLINE nodes, never a drive the node's guards refuse,
//     never a drive smaller than the image;
//   - the oldest job is served first; within a job, drives are taken in
//     node id order, then slot, then drive id, which keeps a job on few
//     nodes and so downloads its image to few node caches;
//   - a standing order (selector and count) takes only fresh drives: none
//     whose last task finished since it was inserted, so a written USB key
//     waiting to be pulled is never overwritten by another order, and a key
//     that failed is not retried until it is re-inserted.
//
// ValidateSubmit and ParseDriveRef return errors that wrap one
// sentinel each; the sentinels' doc comments say which gRPC code the API
// layer maps them to.
package scheduler
