package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// imagerServer is the imagers' API, ImagerService: an adapter that checks
// each imager's Hello and reports and applies them through the core; its
// errors become gRPC codes in statusStream.
type imagerServer struct {
	imagefarmv1.UnimplementedImagerServiceServer
	metrics *apiMetrics // counts the tasks that end
	st      *state.Store
	core    *core.Core
	view    *storeView
	live    *farmView
	audit   auditor
	ttl     time.Duration // a node silent for longer is lost
	// insecure serves imagers without certificates (Config.Insecure), so
	// their node ids are not checked against one.
	insecure bool
	log      *slog.Logger
	wake     func() // asks the placer to run soon
}

// taskStopper tells a task's node to stop it (core.Stopper): over NATS,
// and over its status stream when its imager is connected.
type taskStopper struct {
	pub  *wire.Publisher
	live *farmView
	log  *slog.Logger
}

// StopTask implements core.Stopper.
func (s taskStopper) StopTask(ctx context.Context, t *imagefarmv1.Task, reason imagefarmv1.StopReason, msg string) {
	if strings.HasPrefix(t.GetNodeId(), deviceNodePrefix) {
		return // a netbooted device has no NATS subject: it hears on its report stream (stopEnded)
	}
	if _, err := s.pub.Cancel(ctx, t.GetNodeId(), &imagefarmv1.TaskCancel{TaskId: t.GetId(), JobId: t.GetJobId(),
		Epoch: t.GetEpoch(), Reason: reason}); err != nil {
		s.log.Warn("publish cancel", "task_id", t.GetId(), "error", err)
	}
	if sess := s.live.session(t.GetNodeId()); sess != nil {
		sess.stop(t.GetId(), t.GetEpoch(), reason, msg)
	}
}

// session is one connected imager.
type session struct {
	nodeID, instanceID string
	epoch              uint64
	mu                 sync.Mutex // serializes Send
	stream             imagefarmv1.ImagerService_ConnectServer
	fenced             atomic.Bool // the node was declared lost while connected
}

func (s *session) key() string { return s.nodeID + "/" + s.instanceID }

func (s *session) send(m *imagefarmv1.ConnectResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(m)
}

func (s *session) stop(taskID string, epoch uint64, reason imagefarmv1.StopReason, msg string) error {
	return s.send(&imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_StopTask{StopTask: &imagefarmv1.StopTask{
		TaskId: taskID, Epoch: epoch, Reason: reason, Message: msg}}})
}

// heartbeatInterval is what imagers are told: a third of the TTL, at most 5 s.
func (im *imagerServer) heartbeatInterval() *durationpb.Duration {
	return durationpb.New(min(im.ttl/3, 5*time.Second))
}

// Connect implements ImagerService.Connect; see its protocol in imager.proto.
func (im *imagerServer) Connect(stream imagefarmv1.ImagerService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return fmt.Errorf("the first message on the imager stream must be Hello: %w", errProtocol)
	}
	s, err := im.hello(stream.Context(), stream, hello)
	if err != nil {
		return err
	}
	defer im.live.unregister(s)
	// Messages are received apart from their handling, so that a node is
	// heard while a report waits on the store (NATS restarting): its
	// heartbeats behind that report must not make it look lost.
	msgs := make(chan *imagefarmv1.ConnectRequest, 64)
	go func() {
		defer close(msgs)
		for {
			m, err := stream.Recv()
			if err != nil {
				return // the imager went away; liveness decides when it is lost
			}
			im.live.heard(s.nodeID)
			select {
			case msgs <- m:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for m := range msgs {
		if err := im.handle(stream.Context(), s, m); err != nil {
			return err
		}
		if s.fenced.Load() {
			return fmt.Errorf("this node was declared lost and its tasks fenced: reconnect with a new Hello: %w", errFenced)
		}
	}
	return nil
}

// hello records a node and its drives, raises its epoch for a new imager
// instance, answers HelloAck and stops held tasks it no longer runs.
func (im *imagerServer) hello(ctx context.Context, stream imagefarmv1.ImagerService_ConnectServer, h *imagefarmv1.Hello) (*session, error) {
	if err := checkHello(h); err != nil {
		return nil, err
	}
	if err := im.checkNodePeer(ctx, h.GetNodeId()); err != nil {
		return nil, err
	}
	node, fenced, err := im.core.Hello(ctx, h)
	if err != nil {
		return nil, err
	}
	if fenced != "" {
		im.fenceByHello(ctx, node, fenced)
	}
	s := im.register(node, stream)
	if err := s.send(&imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_HelloAck{HelloAck: &imagefarmv1.HelloAck{
		Epoch: node.GetEpoch(), LastSeq: im.live.lastApplied(s.key()), HeartbeatInterval: im.heartbeatInterval(), HeartbeatTtl: durationpb.New(im.ttl)}}}); err != nil {
		return nil, err
	}
	for _, held := range h.GetHeldTasks() {
		if held.GetEpoch() != node.GetEpoch() {
			s.stop(held.GetTaskId(), held.GetEpoch(), imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH, "the node's epoch moved on: this task was fenced")
		}
	}
	im.log.Info("imager connected", "node_id", node.GetId(), "epoch", node.GetEpoch(), "drives", len(h.GetDrives()))
	im.wake()
	return s, nil
}

// register makes a session of node's imager on stream the node's session.
func (im *imagerServer) register(node *imagefarmv1.Node, stream imagefarmv1.ImagerService_ConnectServer) *session {
	s := &session{nodeID: node.GetId(), instanceID: node.GetInstanceId(), epoch: node.GetEpoch(), stream: stream}
	im.live.register(s)
	return s
}

// fenceByHello records that a Hello raised the epoch of a node whose
// imager was live (why says how), and ends the tasks it held then: their
// reports are refused from now on, so they could never end otherwise.
func (im *imagerServer) fenceByHello(ctx context.Context, node *imagefarmv1.Node, why string) {
	// A restarted imager does this every time: the audit trail keeps it.
	im.log.Info("node fenced by a new Hello", "node_id", node.GetId(), "reason", why)
	im.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: nodeActor(node.GetId()), Action: imagefarmv1.AuditAction_AUDIT_ACTION_NODE_FENCED,
		NodeId: node.GetId(), Message: fmt.Sprintf("%s: epoch raised to %d", why, node.GetEpoch())})
	_, jobs, err := im.view.snapshot(ctx)
	if err == nil {
		err = im.core.LoseTasks(ctx, node.GetId(), node.GetEpoch(), jobs, why)
	}
	if err != nil {
		im.log.Warn("end fenced tasks", "node_id", node.GetId(), "error", err)
	}
}
