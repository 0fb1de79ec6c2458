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
	state      runState // moved only by Agent.moveLocked (taskstate.go)
	batch      *batch   // the batch it runs in
	result     *imagefarmv1.TaskResult
	// deliveries are kept in progress until the run settles; then they
	// are acked, and a later one is acked as it comes.
	deliveries []*wire.Delivery
	// hold keeps one more delivery of the run in progress until release
	// acks them all, which the run does once it settles.
	hold    func(d *wire.Delivery)
	release func()
}

// newTaskRun returns a run for an assignment whose deliveries are kept in
// progress, in g, until it settles. The caller holds a.mu.
func (a *Agent) newTaskRun(ctx context.Context, g *errgroup.Group, key taskKey, as *imagefarmv1.TaskAssignment) *taskRun {
	r := &taskRun{key: key, assignment: as, state: runAssigned}
	keepCtx, keep := context.WithCancel(ctx)
	r.hold = func(d *wire.Delivery) {
		r.deliveries = append(r.deliveries, d)
		g.Go(func() error { return d.KeepInProgress(keepCtx) })
	}
	// The assignment leaves the stream only once the controller has
	// recorded the result (or told the node to stop). When ctx ends first
	// the deliveries stay unacked: a new imager instance raises the
	// node's epoch, and the redelivered assignment is dropped as stale.
	r.release = func() {
		keep()
		ds := r.deliveries
		r.deliveries = nil
		g.Go(func() error {
			for _, d := range ds {
				if ctx.Err() == nil {
					a.ackDelivery(ctx, d)
				}
			}
			return nil
		})
	}
	return r
}

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
	r := a.newTaskRun(ctx, g, key, as)
	a.tasks[key] = r
	r.hold(d)
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
// acks it with the first. A settled run is not run again: its recorded
// result is sent once more (unless it was stopped) and the delivery acked.
// Called with a.mu held.
func (a *Agent) redelivered(ctx context.Context, g *errgroup.Group, r *taskRun, d *wire.Delivery, log *slog.Logger) {
	log.Info("assignment delivered again; not writing the drive twice",
		"num_delivered", d.NumDelivered, "state", r.state)
	if !r.state.settled() {
		r.hold(d)
		return
	}
	if r.state == runSettled {
		a.send(resultMessage(r.result))
	}
	g.Go(func() error { a.ackDelivery(ctx, d); return nil })
}

func (a *Agent) ackDelivery(ctx context.Context, d *wire.Delivery) {
	if err := d.Ack(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("ack dispatch message", "error", err)
	}
}
