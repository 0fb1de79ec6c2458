// Package state owns the controller's state, all of it in NATS JetStream
// and nowhere else, so a controller can be killed and restarted, or
// replaced, without losing anything.
//
// # What is stored where
//
// Four KV buckets hold the current records (a few revisions each, see bucketHistory), each a
// proto-encoded imagefarm.v1 message:
//
//	imagefarm-jobs    <job_id>                      Job (without tasks or revision)
//	imagefarm-tasks   <job_id>.<task_id>            Task
//	imagefarm-nodes   <node_id>                     Node
//	imagefarm-drives  <node_id>.<base32hex(drive)>  Drive
//
// The stream IMAGEFARM_EVENTS (file storage, limits retention, Config's max
// age, 7 days by default) holds every change of a job or task as a JobEvent
// on imagefarm.events.<job_id>. An event's revision is its stream sequence:
// strictly increasing across all jobs, which is what WatchJob resumes from.
// Nodes and drives have no events; they are inventory that imagers
// re-announce, not history.
//
// # Keys
//
// Job, task, node and drive ids must follow their internal/ident rules
// (ident.JobID, TaskID, NodeID, DriveID); anything else is refused with
// ErrInvalidID, never rewritten. Job, task and node ids are used as they
// are, because they also appear in subjects (the events' and internal/wire's
// imagefarm.assign.<node>) where '.', '*' and '>' change the meaning. Drive
// ids come from serials, WWNs and file names and may hold '.' and ':', so
// their key token is the id in base32 "extended hex" without padding
// ([0-9A-V] only, order-preserving); the Drive value keeps the id as it
// is, and keys are never parsed back.
//
// # Writes: KV first, then the event
//
// Every Create and Update of a job or task is: read the record and its KV
// revision, apply the caller's function, write it back only if the record
// is still at that revision (retrying from a fresh read otherwise, so no
// write is ever lost to a racing one), and then append the change's event
// with the message id "<bucket>/<key>/<new kv revision>". The method returns
// only when both are done; only then may the controller acknowledge the
// change to anyone. This order, rather than event first, is chosen because:
//
//   - A writer that loses the revision race has appended nothing, so the
//     stream never shows a change that did not happen. With the event
//     first, the loser's event would already be out, and a stale snapshot
//     could even end up after the winner's.
//   - A snapshot is consistent with a revision: GetJob reads the stream's
//     last revision before it reads KV, and every event up to it was
//     appended after its KV write, so the snapshot reflects them all;
//     WatchJob from revision + 1 misses nothing.
//   - The gap it leaves is closable exactly. If the controller dies after
//     the KV write and before the append, the change is stored but was never
//     acknowledged, and its event is missing. The message id is derived
//     from the KV write itself, so Reconcile (which New runs) finds the KV
//     writes made since shortly before the newest event, appends the event
//     of each that has none, and a late or repeated append of the same
//     change is dropped by the stream's duplicate window.
//
// So every change the controller acknowledged is in the events stream, and
// every change of a record's state is in it at most once.
//
// If the append fails while the process lives, the method returns
// ErrEventPending and keeps the event; it is appended before the next write
// of the same record (so a record's events stay in the order of its
// changes), or by Reconcile. Writes of one record are serialized within a
// process for the same reason. Two controller processes writing the same
// record never lose a write, but their events for it could interleave:
// run one active controller at a time.
//
// Every stored job or task change is an event, so progress-only updates
// (bytes done, throughput) are not for UpdateTask: they are live-only
// TASK_PROGRESS events, kept in memory by the controller.
//
// # Reading
//
// Listings read a bucket through one ordered consumer (a KV watch) rather
// than a get per key, so a job with 10,000 tasks is one stream pass. Watch
// reads the events stream through an ordered consumer that starts at a
// revision and filters on a job's subject.
package state
