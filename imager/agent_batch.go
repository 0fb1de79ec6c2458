package imager

import (
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// progressEvery is the least time between two progress reports of a task
// in the same state: about two a second.
const progressEvery = 500 * time.Millisecond

// batchKey groups the assignments that share one write: the same image,
// for the same job, under the same epoch. Keeping jobs apart means a job's
// cancel ends exactly its own batch.
type batchKey struct {
	job, digest string
	epoch       uint64
}

// batch is the runs that will share one fan-out once batchWindow is over.
type batch struct {
	key    batchKey
	runs   []*taskRun
	cancel context.CancelFunc // ends its write, once it has started
	ended  bool               // a cancel or stop ended its write
}

// enqueue adds r to the batch of its job and image waiting to start, or
// starts a new one. Called with a.mu held.
func (a *Agent) enqueue(ctx context.Context, g *errgroup.Group, r *taskRun) {
	as := r.assignment
	k := batchKey{job: as.GetJobId(), digest: as.GetManifestDigest(), epoch: r.key.epoch}
	b := a.batches[k]
	if b == nil {
		b = &batch{key: k}
		a.batches[k] = b
		g.Go(func() error { a.runBatch(ctx, b); return nil })
	}
	b.runs = append(b.runs, r)
	r.batch = b
}

// unbatch takes r out of its batch if that has not started. Called with
// a.mu held.
func (a *Agent) unbatch(r *taskRun) {
	if b := r.batch; b != nil && a.batches[b.key] == b {
		b.runs = slices.DeleteFunc(b.runs, func(x *taskRun) bool { return x == r })
	}
}

// runBatch waits batchWindow for more assignments, then writes the image
// to every drive of the batch at once and queues each task's result as
// soon as it is final: a drive pulled mid-write is reported at once, not
// when the other drives are done.
func (a *Agent) runBatch(ctx context.Context, b *batch) {
	if !wait.Sleep(ctx, batchWindow) {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runs := a.startBatch(b, cancel)
	if len(runs) == 0 {
		return
	}
	tasks := make([]*imagefarmv1.TaskAssignment, len(runs))
	for i, r := range runs {
		tasks[i] = r.assignment
	}
	a.log.Info("writing", "digest", b.key.digest, "job_id", b.key.job, "tasks", len(runs))
	p := &progress{a: a, runs: runs, last: make([]progressMark, len(runs))}
	a.writer.RunTasks(ctx, b.key.digest, tasks, a.cfg.Drives, p.update, func(i int, res *imagefarmv1.TaskResult) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.finishedLocked(runs[i], res)
	})
}

// finishedLocked takes the result of r's write. Called with a.mu held.
func (a *Agent) finishedLocked(r *taskRun, res *imagefarmv1.TaskResult) {
	log := a.log.With("task_id", r.key.id, "epoch", r.key.epoch, "drive", r.assignment.GetDrive().GetId())
	if res.GetState() == imagefarmv1.TaskState_TASK_STATE_CANCELED && r.state != runStopping && !r.batch.ended {
		// Nobody canceled it or its batch: the imager is shutting down.
		// Reporting CANCELED would cancel the job; the controller ends
		// the task LOST instead (a restarted imager's Hello, or the
		// heartbeat TTL) and a standing order takes another drive.
		log.Warn("task interrupted by the imager's shutdown: not reported, the controller will end it LOST")
		if a.moveLocked(r, runInterrupted) {
			r.result = res
		}
		return
	}
	log.Info("task finished", "state", res.GetState(), "verified_digest", res.GetVerifiedDigest(),
		"failure", res.GetFailure().GetMessage(), "stopped", r.state == runStopping)
	a.completeLocked(r, res)
}

// startBatch takes b's runs still assigned (a cancel or stop while it
// waited took the others out), gives b cancel, and reports them FETCHING.
func (a *Agent) startBatch(b *batch, cancel context.CancelFunc) []*taskRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.batches, b.key)
	b.cancel = cancel
	var runs []*taskRun
	for _, r := range b.runs {
		if r.state == runAssigned && a.reportLocked(r, &imagefarmv1.TaskProgress{State: imagefarmv1.TaskState_TASK_STATE_FETCHING}) {
			runs = append(runs, r)
		}
	}
	b.runs = runs
	return runs
}

// reportLocked moves r to the state of p, when that differs from its own,
// and queues p for the controller. A stopped run reports nothing; a move
// runMoves refuses (progress after the result) is not reported. It
// returns whether p was queued. Called with a.mu held.
func (a *Agent) reportLocked(r *taskRun, p *imagefarmv1.TaskProgress) bool {
	if r.state == runStopping {
		return false
	}
	to, ok := runStateOf(p.GetState())
	if !ok {
		a.log.Error("task progress in a state no run reports", "task_id", r.key.id, "epoch", r.key.epoch, "state", p.GetState())
		return false
	}
	if to != r.state && !a.moveLocked(r, to) {
		return false
	}
	p.TaskId, p.Epoch = r.key.id, r.key.epoch
	a.send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskProgress{TaskProgress: p}})
	return true
}

// progress turns the write's progress calls into TaskProgress reports: at
// once on a change of state, else at most every progressEvery.
type progress struct {
	a    *Agent
	runs []*taskRun
	mu   sync.Mutex
	last []progressMark
}

// progressMark is what was last reported for a task.
type progressMark struct {
	state imagefarmv1.TaskState
	at    time.Time
	done  int64
}

// phaseStates maps the write's phases to the task states reported while
// they run; the final phases are reported by the result. The capacity
// check comes before the first chunk is written, after the image is
// fetched: its progress is reported as FETCHING's, in bytes of probe I/O.
var phaseStates = map[Phase]imagefarmv1.TaskState{
	PhaseFetching:  imagefarmv1.TaskState_TASK_STATE_FETCHING,
	PhaseChecking:  imagefarmv1.TaskState_TASK_STATE_FETCHING,
	PhaseWriting:   imagefarmv1.TaskState_TASK_STATE_WRITING,
	PhaseSyncing:   imagefarmv1.TaskState_TASK_STATE_WRITING,
	PhaseVerifying: imagefarmv1.TaskState_TASK_STATE_VERIFYING,
}

func (p *progress) update(task int, phase Phase, done, total int64) {
	state, ok := phaseStates[phase]
	if !ok {
		return
	}
	now := time.Now()
	p.mu.Lock()
	m := &p.last[task]
	var rate uint64
	switch {
	case state != m.state:
	case now.Sub(m.at) < progressEvery:
		p.mu.Unlock()
		return
	default:
		rate = uint64(max(float64(done-m.done)/now.Sub(m.at).Seconds(), 0))
	}
	*m = progressMark{state: state, at: now, done: done}
	p.mu.Unlock()
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	p.a.reportLocked(p.runs[task], &imagefarmv1.TaskProgress{
		State: state, BytesDone: uint64(max(done, 0)), BytesTotal: uint64(max(total, 0)), BytesPerSecond: rate})
}
