package scheduler

import (
	"slices"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// DefaultHeartbeatTTL is how long a node may stay silent before it is
// declared lost. Imagers send a heartbeat every few seconds, so this is
// several missed in a row, not one late packet.
const DefaultHeartbeatTTL = 15 * time.Second

// Lost returns, sorted, the ids of the nodes taking or finishing tasks
// (ONLINE or DRAINING) whose last heartbeat is more than ttl before now.
// A ttl of zero or less means DefaultHeartbeatTTL. The controller then raises
// their epoch, marks them LOST and calls LostTasks for each.
func Lost(f Farm, now time.Time, ttl time.Duration) []string {
	if ttl <= 0 {
		ttl = DefaultHeartbeatTTL
	}
	var out []string
	for _, n := range f.Nodes {
		live := n.State == imagefarmv1.NodeState_NODE_STATE_ONLINE ||
			n.State == imagefarmv1.NodeState_NODE_STATE_DRAINING
		if live && now.Sub(n.LastHeartbeat) > ttl {
			out = append(out, n.ID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// LostTask is a task that ends LOST because its node was lost.
type LostTask struct {
	JobID   string
	TaskID  string
	NodeID  string
	DriveID string
	// Requeue is set for a standing order's task: once the task is LOST it
	// no longer counts towards the order, so the next Place gives the order
	// another drive (not this one, until it is re-inserted). An explicit
	// job's task cannot move to another drive; it just ends LOST.
	Requeue bool
}

// LostTasks returns the tasks under way on node nodeID, oldest job first:
// all of them end LOST when the node is declared lost or its imager
// restarts, since whatever they had written can no longer be trusted or
// finished under the old epoch.
func LostTasks(nodeID string, jobs []Job) []LostTask {
	var out []LostTask
	for _, j := range byAge(jobs) {
		for _, t := range j.Tasks {
			if t.NodeID == nodeID && active(t.State) {
				out = append(out, LostTask{
					JobID: j.ID, TaskID: t.ID, NodeID: t.NodeID, DriveID: t.DriveID,
					Requeue: len(j.Drives) == 0 && j.Selector != nil,
				})
			}
		}
	}
	return out
}
