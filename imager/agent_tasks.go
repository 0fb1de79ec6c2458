package imager

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// keepRecords is how many finished runs an agent remembers, so that an
// assignment delivered again after it was acked (published again after the
// stream's duplicate window, or left on a recreated consumer) is answered
// from the record instead of writing the drive twice. The same bound
// applies to cancels and stops remembered for runs not seen yet.
const keepRecords = 4096

// staleRetry is when an assignment for an epoch above the node's known one
// comes again: the HelloAck that brings that epoch is on its way.
const staleRetry = time.Second

// taskKey names one run of a task: a task runs at most once per epoch.
type taskKey struct {
	id    string
	epoch uint64
}

func (k taskKey) String() string { return k.id + "/" + strconv.FormatUint(k.epoch, 10) }

// stopNote is a cancel (TaskCancel over NATS: end CANCELED and report it)
// or a stop (StopTask from the controller, or a fenced epoch: end and
// report nothing more).
type stopNote struct {
	stop   bool
	reason imagefarmv1.StopReason
}

// taskRun is one run of a task on this node, from its first delivery until
// the controller has its result and its NATS message is acked.
type taskRun struct {
	key        taskKey
	assignment *imagefarmv1.TaskAssignment
	state      imagefarmv1.TaskState // ASSIGNED until it starts, then as reported
	canceled   bool                  // a TaskCancel came: end CANCELED
	stopped    bool                  // StopTask or fenced: report nothing more
	batch      *batch                // the batch it runs in
	cancel     context.CancelFunc    // of its batch's write, while it runs
	result     *imagefarmv1.TaskResult
	// settled is closed once the controller acknowledged the result, or
	// the run was stopped; then its deliveries are acked.
	settled    chan struct{}
	isSettled  bool
	deliveries []*wire.Delivery
	acked      bool // the deliveries were acked
	// hold keeps one more delivery of the run in progress until keep is
	// called, which the run does once it settles.
	hold func(d *wire.Delivery)
	keep context.CancelFunc
}

// newTaskRun returns a run for an assignment whose deliveries are kept in
// progress, in g, until it settles. The caller holds a.mu.
func newTaskRun(ctx context.Context, g *errgroup.Group, key taskKey, as *imagefarmv1.TaskAssignment) *taskRun {
	r := &taskRun{key: key, assignment: as, state: imagefarmv1.TaskState_TASK_STATE_ASSIGNED, settled: make(chan struct{})}
	keepCtx, keep := context.WithCancel(ctx)
	r.keep = keep
	r.hold = func(d *wire.Delivery) {
		r.deliveries = append(r.deliveries, d)
		g.Go(func() error { return d.KeepInProgress(keepCtx) })
	}
	return r
}

func (r *taskRun) running() bool { return r.result == nil && !r.stopped }

// handle takes one message from the node's subject. It returns at once;
// the work runs in g.
func (a *Agent) handle(ctx context.Context, g *errgroup.Group, d *wire.Delivery) {
	if as := d.Message.GetAssignment(); as != nil {
		a.assign(ctx, g, d, as)
		return
	}
	c := d.Message.GetCancel()
	a.log.Info("task canceled", "task_id", c.GetTaskId(), "job_id", c.GetJobId(), "epoch", c.GetEpoch(), "reason", c.GetReason())
	a.stop(taskKey{c.GetTaskId(), c.GetEpoch()}, stopNote{reason: c.GetReason()})
	g.Go(func() error { a.ackDelivery(ctx, d); return nil })
}

// assign starts a run for an assignment of the current epoch, drops a
// stale one without touching its drive, and answers a delivery of a run it
// already knows without writing the drive again.
func (a *Agent) assign(ctx context.Context, g *errgroup.Group, d *wire.Delivery, as *imagefarmv1.TaskAssignment) {
	key := taskKey{as.GetTaskId(), as.GetEpoch()}
	log := a.log.With("task_id", key.id, "epoch", key.epoch, "drive", as.GetDrive().GetId())
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case key.epoch < a.epoch:
		log.Warn("stale assignment dropped; drive not touched", "node_epoch", a.epoch)
		if err := d.Term("stale epoch"); err != nil {
			log.Warn("drop stale assignment", "error", err)
		}
		return
	case key.epoch > a.epoch:
		// Assigned under an epoch this agent has not been told yet (or
		// before any HelloAck): wait for the HelloAck that brings it.
		log.Debug("assignment ahead of the node's epoch, later", "node_epoch", a.epoch)
		if err := d.Nak(staleRetry); err != nil {
			log.Warn("postpone assignment", "error", err)
		}
		return
	}
	if r := a.tasks[key]; r != nil {
		a.redelivered(ctx, g, r, d, log)
		return
	}
	r := newTaskRun(ctx, g, key, as)
	a.tasks[key] = r
	r.hold(d)
	g.Go(func() error { a.finish(ctx, r); return nil })
	if note, ok := a.early[key]; ok {
		delete(a.early, key)
		log.Info("assignment came after its cancel; drive not touched")
		a.endUnstarted(r, note)
		return
	}
	log.Info("task assigned", "job_id", as.GetJobId(), "digest", as.GetManifestDigest(), "image_ref", as.GetImageRef())
	a.enqueue(ctx, g, r)
}

// redelivered answers an assignment delivered again. A run still going or
// waiting for the controller's ack keeps this delivery in progress too and
// acks it with the first. A finished run is not run again: its recorded
// result is sent once more (unless it was stopped) and the delivery acked.
// Called with a.mu held.
func (a *Agent) redelivered(ctx context.Context, g *errgroup.Group, r *taskRun, d *wire.Delivery, log *slog.Logger) {
	log.Info("assignment delivered again; not writing the drive twice",
		"num_delivered", d.NumDelivered, "state", r.state, "settled", r.isSettled)
	if !r.acked {
		r.hold(d)
		return
	}
	if r.result != nil && !r.stopped {
		a.send(resultMessage(r.result))
	}
	g.Go(func() error { a.ackDelivery(ctx, d); return nil })
}

// finish waits until r settles, then acks its deliveries, so that the
// assignment leaves the stream only once the controller has recorded the
// result (or told the node to stop). When ctx ends first the deliveries
// stay unacked: a new imager instance raises the node's epoch, and the
// redelivered assignment is dropped as stale.
func (a *Agent) finish(ctx context.Context, r *taskRun) {
	select {
	case <-r.settled:
	case <-ctx.Done():
		return
	}
	a.mu.Lock()
	r.keep()
	ds := r.deliveries
	r.deliveries, r.acked = nil, true
	a.mu.Unlock()
	for _, d := range ds {
		a.ackDelivery(ctx, d)
	}
}

func (a *Agent) ackDelivery(ctx context.Context, d *wire.Delivery) {
	if err := d.Ack(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("ack dispatch message", "error", err)
	}
}
