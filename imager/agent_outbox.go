package imager

import (
	"cmp"
	"slices"
	"sync"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// outbox keeps every numbered message of the status stream until the
// controller acknowledges it, across reconnects (imager.proto, Connect).
// It stays small: a progress report replaces the kept progress of the same
// task, a drive event replaces the kept events of the same drive, and a
// Hello replaces every kept drive event.
type outbox struct {
	mu   sync.Mutex
	seq  uint64                            // last seq given out
	sent uint64                            // highest seq sent on the current stream
	kept []*imagefarmv1.ConnectRequest     // unacknowledged, in seq order
	wake chan struct{}                     // something new to send
	gone func(*imagefarmv1.ConnectRequest) // told of each acknowledged message
}

func newOutbox(acked func(*imagefarmv1.ConnectRequest)) *outbox {
	return &outbox{wake: make(chan struct{}, 1), gone: acked}
}

// add numbers m, keeps it and wakes the sender. It returns m's seq.
func (o *outbox) add(m *imagefarmv1.ConnectRequest) uint64 {
	o.mu.Lock()
	o.seq++
	m.Seq = o.seq
	if key := supersedes(m); key != "" {
		o.kept = slices.DeleteFunc(o.kept, func(k *imagefarmv1.ConnectRequest) bool { return supersedes(k) == key })
	}
	o.kept = append(o.kept, m)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return m.Seq
}

// supersedes names what a newer message of the same kind replaces: the
// progress of one task run, or the record of one drive. Results are never
// replaced.
func supersedes(m *imagefarmv1.ConnectRequest) string {
	switch b := m.GetBody().(type) {
	case *imagefarmv1.ConnectRequest_TaskProgress:
		return "progress\x00" + taskKey{b.TaskProgress.GetTaskId(), b.TaskProgress.GetEpoch()}.String()
	case *imagefarmv1.ConnectRequest_DriveInserted:
		return "drive\x00" + b.DriveInserted.GetDrive().GetId()
	case *imagefarmv1.ConnectRequest_DriveRemoved:
		return "drive\x00" + b.DriveRemoved.GetDriveId()
	}
	return ""
}

// ack forgets every message up to seq; an Ack covers every lower seq.
func (o *outbox) ack(seq uint64) {
	o.mu.Lock()
	i := 0
	for i < len(o.kept) && o.kept[i].GetSeq() <= seq {
		i++
	}
	done := slices.Clone(o.kept[:i])
	o.kept = slices.Delete(o.kept, 0, i)
	o.mu.Unlock()
	for _, m := range done {
		o.gone(m)
	}
}

// restart begins a new stream: what the controller applied (lastSeq, from
// HelloAck) is acknowledged, and the rest is sent again from the start.
func (o *outbox) restart(lastSeq uint64) {
	o.ack(lastSeq)
	o.mu.Lock()
	o.sent = 0
	o.mu.Unlock()
}

// next returns the kept messages not yet sent on the current stream, in
// order, and counts them as sent.
func (o *outbox) next() []*imagefarmv1.ConnectRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	i, _ := slices.BinarySearchFunc(o.kept, o.sent+1, func(m *imagefarmv1.ConnectRequest, seq uint64) int {
		return cmp.Compare(m.GetSeq(), seq)
	})
	out := slices.Clone(o.kept[i:])
	if len(out) > 0 {
		o.sent = out[len(out)-1].GetSeq()
	}
	return out
}

// dropTask forgets what is kept about one task run: the controller told the
// imager to stop it and not report it again.
func (o *outbox) dropTask(k taskKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kept = slices.DeleteFunc(o.kept, func(m *imagefarmv1.ConnectRequest) bool {
		if p := m.GetTaskProgress(); p != nil {
			return (taskKey{p.GetTaskId(), p.GetEpoch()}) == k
		}
		r := m.GetTaskResult()
		return r != nil && (taskKey{r.GetTaskId(), r.GetEpoch()}) == k
	})
}

// dropDriveEvents forgets kept drive events: a Hello about to be sent
// carries the whole inventory, which replaces them.
func (o *outbox) dropDriveEvents() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kept = slices.DeleteFunc(o.kept, func(m *imagefarmv1.ConnectRequest) bool {
		return m.GetDriveInserted() != nil || m.GetDriveRemoved() != nil
	})
}

// len is how many messages are kept.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.kept)
}
