package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imagefarm/imagefarm/internal/wait"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/simimager"
)

// driveSize is what every simulated USB key holds.
const driveSize = 64 << 30

// simImager is one imager node that writes nothing, the one simulator of
// tests/testenv/simimager: it says Hello with its keys, sends heartbeats,
// and answers each assignment with progress and a DONE result, acks the
// assignment once the controller acknowledged the result, and then swaps
// the key for a new one, as a technician does.
type simImager struct {
	id   string
	cfg  *Config
	rec  *recorder
	node *simimager.Imager

	mu   sync.Mutex
	gen  map[string]int  // drive id -> generation of the key in it
	runs map[string]bool // task id/epoch -> delivered before
}

func newSimImager(id string, cfg *Config, rec *recorder) *simImager {
	return &simImager{id: id, cfg: cfg, rec: rec, gen: map[string]int{}, runs: map[string]bool{}}
}

// run connects to the controller and to NATS, each over a connection of
// its own like a real node, and serves until ctx ends. It calls greeted
// once the controller answered Hello.
func (im *simImager) run(ctx context.Context, addr string, creds credentials.TransportCredentials, natsURL string, greeted func()) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	nc, err := nats.Connect(natsURL, nats.Name("bench-imager-"+im.id), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("node %s: connect to NATS: %w", im.id, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	drives := make([]*imagefarmv1.Drive, im.cfg.Drives)
	now := time.Now()
	for i := range drives {
		drives[i] = im.drive(fmt.Sprintf("d%02d", i), 0)
		im.rec.inserted(drives[i].GetSerial(), now)
	}
	g, gctx := errgroup.WithContext(ctx)
	im.node = simimager.New(simimager.Config{
		Hello: &imagefarmv1.Hello{NodeId: im.id, InstanceId: "bench-" + im.id, Pool: "bench", Version: "bench", Drives: drives},
		Conn:  conn, JetStream: js, Reply: im.reply, SubscriberError: im.rec.subscriberError,
		Deliver: func(_ context.Context, d *wire.Delivery) { im.deliver(gctx, g, d) },
	})
	ack, err := im.node.Connect(gctx)
	if err != nil {
		return err
	}
	greeted()
	g.Go(func() error { return im.node.Run(gctx) })
	g.Go(func() error {
		return im.node.Beat(gctx, max(ack.GetHeartbeatInterval().AsDuration(), 100*time.Millisecond))
	})
	return g.Wait()
}

// drive is the key of generation gen in slot id: a new serial each time.
func (im *simImager) drive(id string, gen int) *imagefarmv1.Drive {
	return &imagefarmv1.Drive{Id: id, NodeId: im.id, Path: "/dev/bench/" + id, SizeBytes: driveSize,
		LogicalBlockSize: 512, PhysicalBlockSize: 512, Vendor: "Bench", Model: "BenchKey",
		Serial: "SN-" + im.id + "-" + id + "-" + strconv.Itoa(gen), Removable: true,
		Transport: imagefarmv1.Transport_TRANSPORT_USB, State: imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE}
}

// reply counts the controller's StopTasks: the benchmark stops nothing.
func (im *simImager) reply(m *imagefarmv1.ConnectResponse) {
	if st := m.GetStopTask(); st != nil {
		im.rec.count(&im.rec.stops)
		slog.Warn("controller stops a task", "node_id", im.id, "task_id", st.GetTaskId(), "reason", st.GetReason(), "message", st.GetMessage())
	}
}

// deliver takes one message from the node's subject; the work runs in g.
func (im *simImager) deliver(ctx context.Context, g *errgroup.Group, d *wire.Delivery) {
	at := time.Now()
	a := d.Message.GetAssignment()
	if d.NumDelivered > 1 {
		im.rec.count(&im.rec.redelivered)
	}
	if a == nil { // the benchmark cancels nothing
		im.rec.count(&im.rec.cancels)
		g.Go(func() error { im.ackDelivery(ctx, d); return nil })
		return
	}
	key := a.GetTaskId() + "/" + strconv.FormatUint(a.GetEpoch(), 10)
	id := a.GetDrive().GetId()
	im.mu.Lock()
	dup, stale := im.runs[key], a.GetEpoch() != im.node.Epoch()
	// Like a real imager, check the key in the slot is the one the task
	// was planned for; another one means the planned key was pulled.
	pulled := a.GetDrive().GetSerial() != im.drive(id, im.gen[id]).GetSerial()
	im.runs[key] = true
	im.mu.Unlock()
	switch {
	case stale:
		im.rec.count(&im.rec.stale)
		d.Term("stale epoch")
		return
	case dup:
		im.rec.count(&im.rec.duplicates)
		return // the first delivery's run acks the message
	}
	im.rec.assigned(assignment{job: a.GetJobId(), task: a.GetTaskId(), serial: a.GetDrive().GetSerial(), at: at, refused: pulled})
	keepCtx, keep := context.WithCancel(ctx)
	g.Go(func() error { return d.KeepInProgress(keepCtx) })
	g.Go(func() error {
		defer keep()
		if pulled {
			return im.refuse(ctx, a, d, keep)
		}
		return im.work(ctx, a, d, keep)
	})
}

// refuse ends a task planned for a key no longer in its slot FAILED, as a
// real imager's identity guard does, without touching the slot's key.
func (im *simImager) refuse(ctx context.Context, a *imagefarmv1.TaskAssignment, d *wire.Delivery, keep func()) error {
	seq, err := im.node.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
		Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_IDENTITY_CHANGED,
			Message: "the key in the slot is not the one the task was planned for"}}}})
	if err != nil {
		return err
	}
	if im.node.WaitAck(ctx, seq) != nil {
		return nil
	}
	keep()
	im.ackDelivery(ctx, d)
	return nil
}

// work plays one task: progress, result, the NATS ack once the controller
// has the result, then the key swap.
func (im *simImager) work(ctx context.Context, a *imagefarmv1.TaskAssignment, d *wire.Delivery, keep func()) error {
	if !wait.Sleep(ctx, im.cfg.WriteTime) {
		return nil
	}
	size := uint64(im.cfg.ImageSize)
	if _, err := im.node.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskProgress{TaskProgress: &imagefarmv1.TaskProgress{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_WRITING, BytesTotal: size}}}); err != nil {
		return err
	}
	sent := time.Now()
	seq, err := im.node.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_DONE,
		VerifiedDigest: a.GetManifestDigest(), BytesWritten: size, Duration: durationpb.New(im.cfg.WriteTime)}}})
	if err != nil {
		return err
	}
	if im.node.WaitAck(ctx, seq) != nil {
		return nil
	}
	im.rec.resultAcked(a.GetJobId(), a.GetTaskId(), sent)
	keep()
	start := time.Now()
	im.ackDelivery(ctx, d)
	im.rec.natsAcked(time.Since(start))
	if !wait.Sleep(ctx, im.cfg.SwapTime) {
		return nil
	}
	return im.swap(ctx, a.GetDrive())
}

func (im *simImager) ackDelivery(ctx context.Context, d *wire.Delivery) {
	if err := d.Ack(ctx); err != nil && ctx.Err() == nil {
		im.rec.count(&im.rec.ackErrors)
		slog.Warn("ack assignment", "node_id", im.id, "error", err)
	}
}

// swap pulls the written key and inserts a new one in the same slot.
func (im *simImager) swap(ctx context.Context, written *imagefarmv1.DriveIdentity) error {
	driveID := written.GetId()
	im.mu.Lock()
	im.gen[driveID]++
	gen := im.gen[driveID]
	im.mu.Unlock()
	im.rec.removed(written.GetSerial(), time.Now())
	if _, err := im.node.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveRemoved{
		DriveRemoved: &imagefarmv1.DriveRemoved{DriveId: driveID}}}); err != nil {
		return err
	}
	key := im.drive(driveID, gen)
	sent := time.Now()
	im.rec.inserted(key.GetSerial(), sent) // before the send: its assignment may come at once
	seq, err := im.node.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveInserted{
		DriveInserted: &imagefarmv1.DriveInserted{Drive: key}}})
	if err != nil {
		return err
	}
	if im.node.WaitAck(ctx, seq) == nil {
		im.rec.insertAcked(sent)
	}
	return nil
}
