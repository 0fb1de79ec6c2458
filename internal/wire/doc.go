// Package wire is the NATS wire contract shared by the controller and the
// imager nodes (and by internal/natsauth, which grants each node exactly what
// reading its own consumer takes): the subjects, the stream and consumer
// names and settings, the DispatchMessage that carries an assignment or a
// cancel, and how both sides publish, read and acknowledge it. It lives
// outside controller/ so that neither side imports the other; ids are checked
// by internal/ident, as everywhere else.
//
// The controller publishes every DispatchMessage on "imagefarm.assign.<node>"
// in the work-queue stream IMAGEFARM_ASSIGN. A cancel goes on the same subject
// as the assignment it cancels, so a node that reads its messages in order
// sees the assignment first. Each message carries a Nats-Msg-Id:
// "<task_id>/<epoch>" for an assignment and "<task_id>/<epoch>/cancel" for a
// cancel, so a publish retried after a timeout or a controller crash is
// stored once within the stream's duplicate window.
//
// Each node reads through its own durable pull consumer, "imager-<node>",
// filtered on its subject with explicit acks. Either side may create it; both
// must pass the same Config, because the last creator's settings win. The
// imager keeps an assignment in progress while it writes the drive
// (Delivery.KeepInProgress) and acks it at the end; an assignment that is not
// acked within AckWait is delivered again, with a higher delivery count.
//
// Delivery is at least once, and only first deliveries come in stream order.
// What this package does not do, and the imager must: run a task at most once
// per (task id, epoch) however often it is delivered (a message published
// again after the duplicate window, or left unacked when its consumer was
// recreated, even comes back with NumDelivered 1); drop an assignment whose
// epoch is below the node's current one; and remember a cancel that arrives
// before a redelivered assignment. Messages that are not a valid
// DispatchMessage for the node are terminated here and reported through
// SubscriberConfig.OnError; the handler never sees them.
package wire
