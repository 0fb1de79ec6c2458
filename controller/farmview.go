package controller

import (
	"sync"
	"time"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// farmView is what the controller keeps in memory only: the imagers
// connected to it, when each was last heard, and the live progress of
// tasks (too frequent to store; a restart loses only that). Its lock is
// taken by its own methods only.
type farmView struct {
	mu       sync.Mutex
	sessions map[string]*session // node id -> connected imager
	lastSeq  map[string]uint64   // node id/instance id -> last seq applied
	seen     map[string]time.Time
	progress map[string]*imagefarmv1.Task // task id -> latest progress
}

func newFarmView() *farmView {
	return &farmView{sessions: map[string]*session{}, lastSeq: map[string]uint64{}, seen: map[string]time.Time{},
		progress: map[string]*imagefarmv1.Task{}}
}

// register makes s its node's session and the node heard now, fencing the
// session it replaces if the node's epoch moved on.
func (v *farmView) register(s *session) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if old := v.sessions[s.nodeID]; old != nil && old.epoch != s.epoch {
		old.fenced.Store(true) // a replaced instance: its next report is refused and its stream ended
	}
	v.sessions[s.nodeID] = s
	v.seen[s.nodeID] = time.Now()
}

// unregister forgets s, unless another session of its node replaced it.
func (v *farmView) unregister(s *session) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sessions[s.nodeID] == s {
		delete(v.sessions, s.nodeID)
	}
}

// session is the connected session of a node, nil if none.
func (v *farmView) session(nodeID string) *session {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sessions[nodeID]
}

// fence marks the connected session of a node fenced, if there is one:
// its next report is refused and its stream ended.
func (v *farmView) fence(nodeID string) {
	if s := v.session(nodeID); s != nil {
		s.fenced.Store(true)
	}
}

// heard records that a node was heard from now.
func (v *farmView) heard(nodeID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen[nodeID] = time.Now()
}

// withHeard moves the last heartbeat of each of farm's nodes to when it
// was last heard, if later: a node heard since the last store write counts
// as heard. A node not heard since this controller started counts as heard
// at started.
func (v *farmView) withHeard(farm scheduler.Farm, started time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, n := range farm.Nodes {
		seen, ok := v.seen[n.ID]
		if !ok {
			seen = started
		}
		if seen.After(n.LastHeartbeat) {
			farm.Nodes[i].LastHeartbeat = seen
		}
	}
}

// applied reports whether the message with seq from an imager instance
// (key) was applied before.
func (v *farmView) applied(key string, seq uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return seq > 0 && seq <= v.lastSeq[key]
}

// apply records that the message with seq from an imager instance (key)
// was applied.
func (v *farmView) apply(key string, seq uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lastSeq[key] = max(v.lastSeq[key], seq)
}

// lastApplied is the last seq applied from an imager instance (key), kept
// across its reconnects (not across controller restarts: applying is
// idempotent).
func (v *farmView) lastApplied(key string) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastSeq[key]
}

// setProgress keeps t as the live progress of its task.
func (v *farmView) setProgress(t *imagefarmv1.Task) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.progress[t.GetId()] = t
}

// dropProgress forgets the live progress of an ended task.
func (v *farmView) dropProgress(taskID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.progress, taskID)
}

// fillProgress fills tasks that are running with their live progress.
func (v *farmView) fillProgress(tasks []*imagefarmv1.Task) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, t := range tasks {
		if p := v.progress[t.GetId()]; p != nil && !t.GetState().Final() {
			t.BytesDone, t.BytesTotal, t.BytesPerSecond = p.GetBytesDone(), p.GetBytesTotal(), p.GetBytesPerSecond()
		}
	}
}

// progressOf is the live progress of a job's running tasks, of every job's
// when jobID is "".
func (v *farmView) progressOf(jobID string) []*imagefarmv1.Task {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*imagefarmv1.Task
	for _, t := range v.progress {
		if jobID == "" || t.GetJobId() == jobID {
			out = append(out, t)
		}
	}
	return out
}
