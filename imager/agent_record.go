package imager

import (
	"cmp"
	"slices"
	"strings"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// stop applies a cancel or a stop to a run. A cancel ends a run that has
// not finished as CANCELED and reports it; a finished run keeps its
// result. A stop ends the run, forgets what was queued about it and
// reports nothing more. Either is remembered for a run not seen yet, so
// that an assignment delivered after its cancel never touches the drive.
func (a *Agent) stop(key taskKey, note stopNote) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.tasks[key]
	switch {
	case r == nil:
		a.rememberEarly(key, note)
	case note.stop:
		a.stopLocked(r)
	case r.state == runAssigned: // still waiting for its batch
		a.unbatch(r)
		a.completeLocked(r, canceledResult(r.assignment))
	case r.state.running():
		a.endBatch(r) // its write ends with a CANCELED result
	}
}

// stopLocked stops r: a run still writing ends its write, and nothing
// queued or to come about r is reported. A run already stopped, or cut by
// the imager's shutdown, is left as it is. Called with a.mu held.
func (a *Agent) stopLocked(r *taskRun) {
	to := runStopped
	switch {
	case r.state == runStopping || r.state == runStopped || r.state == runInterrupted:
		return
	case r.state == runAssigned:
		a.unbatch(r)
	case r.state.running():
		a.endBatch(r)
		to = runStopping
	}
	a.out.dropTask(r.key)
	a.moveLocked(r, to)
}

// endBatch cancels the write r shares with the rest of its batch. A batch
// is one fan-out with one context, so every task in it ends CANCELED (and
// is reported so, unless stopped); the write cannot go on for some drives
// only. Batches hold the tasks of one job and image, and cancels come per
// job, so in practice the batch's other tasks are being canceled too.
// Called with a.mu held.
func (a *Agent) endBatch(r *taskRun) {
	b := r.batch
	if !b.ended {
		b.ended = true
		a.log.Info("ending a batch's write", "task_id", r.key.id, "epoch", r.key.epoch,
			"job_id", b.key.job, "batch_tasks", len(b.runs))
	}
	b.cancel()
}

// rememberEarly keeps a cancel or stop for a run not seen yet, within
// keepRecords. Called with a.mu held.
func (a *Agent) rememberEarly(key taskKey, note stopNote) {
	if _, ok := a.early[key]; !ok {
		a.earlyFIFO = append(a.earlyFIFO, key)
	}
	a.early[key] = note
	for len(a.earlyFIFO) > keepRecords {
		delete(a.early, a.earlyFIFO[0])
		a.earlyFIFO = a.earlyFIFO[1:]
	}
}

// endUnstarted ends a run whose cancel or stop came before it: the drive
// is not touched. Called with a.mu held.
func (a *Agent) endUnstarted(r *taskRun, note stopNote) {
	if note.stop {
		a.stopLocked(r)
		return
	}
	a.completeLocked(r, canceledResult(r.assignment))
}

func canceledResult(as *imagefarmv1.TaskAssignment) *imagefarmv1.TaskResult {
	return taskResult(as, time.Now(), Result{Phase: PhaseCanceled})
}

// fence takes the node's epoch from a HelloAck. Runs under another epoch
// are no longer the node's (the controller raised the epoch because it
// declared the node lost or saw a new imager instance, and marked them
// LOST): they are stopped as the controller's StopTask would.
func (a *Agent) fence(epoch uint64) {
	a.mu.Lock()
	if a.epoch != epoch {
		a.log.Info("node epoch", "epoch", epoch, "previous_epoch", a.epoch)
	}
	a.epoch = epoch
	var fenced []taskKey
	for k, r := range a.tasks {
		if k.epoch != epoch && !r.state.settled() {
			fenced = append(fenced, k)
		}
	}
	a.mu.Unlock()
	for _, k := range fenced {
		a.log.Warn("task fenced by the node's new epoch", "task_id", k.id, "epoch", k.epoch, "node_epoch", epoch)
		a.stop(k, stopNote{stop: true, reason: imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH})
	}
}

// completeLocked records a run's result and, unless the run was stopped,
// queues it for the controller. Called with a.mu held.
func (a *Agent) completeLocked(r *taskRun, res *imagefarmv1.TaskResult) {
	if r.state == runStopping {
		a.moveLocked(r, runStopped)
		r.result = res
		return
	}
	if a.moveLocked(r, runReporting) {
		r.result = res
		a.send(resultMessage(res))
	}
}

func resultMessage(res *imagefarmv1.TaskResult) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: res}}
}

// acknowledged is told by the outbox of each message the controller
// acknowledged; an acknowledged result settles its run.
func (a *Agent) acknowledged(m *imagefarmv1.ConnectRequest) {
	res := m.GetTaskResult()
	if res == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.tasks[taskKey{res.GetTaskId(), res.GetEpoch()}]; r != nil && r.state == runReporting {
		a.moveLocked(r, runSettled)
	}
}

// settleLocked acks the NATS deliveries of a run that is over for the
// controller, and forgets the oldest runs beyond keepRecords. moveLocked
// calls it once per run, as the run settles. Called with a.mu held.
func (a *Agent) settleLocked(r *taskRun) {
	r.release()
	a.settled = append(a.settled, r.key)
	for len(a.settled) > keepRecords {
		k := a.settled[0]
		a.settled = a.settled[1:]
		if old := a.tasks[k]; old != nil && old.state == runStopping {
			a.settled = append(a.settled, k) // a stopped write still ending
			break
		}
		delete(a.tasks, k)
	}
}

// held lists the runs the node holds for Hello: those not settled.
func (a *Agent) held() []*imagefarmv1.HeldTask {
	a.mu.Lock()
	defer a.mu.Unlock()
	var hs []*imagefarmv1.HeldTask
	for k, r := range a.tasks {
		if !r.state.settled() {
			hs = append(hs, &imagefarmv1.HeldTask{TaskId: k.id, Epoch: k.epoch, State: r.taskState()})
		}
	}
	slices.SortFunc(hs, func(x, y *imagefarmv1.HeldTask) int {
		return cmp.Or(strings.Compare(x.GetTaskId(), y.GetTaskId()), cmp.Compare(x.GetEpoch(), y.GetEpoch()))
	})
	return hs
}

// busyDrives maps the drives being written to their task ids.
func (a *Agent) busyDrives() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	busy := map[string]string{}
	for k, r := range a.tasks {
		if r.state.busy() {
			busy[r.assignment.GetDrive().GetId()] = k.id
		}
	}
	return busy
}
