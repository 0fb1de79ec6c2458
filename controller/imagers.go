package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

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
func (c *Controller) heartbeatInterval() *durationpb.Duration {
	return durationpb.New(min(c.cfg.HeartbeatTTL/3, 5*time.Second))
}

// Connect implements ImagerService.Connect; see its protocol in imager.proto.
func (c *Controller) Connect(stream imagefarmv1.ImagerService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return toStatus(fmt.Errorf("the first message on the imager stream must be Hello: %w", errProtocol))
	}
	s, err := c.hello(stream.Context(), stream, hello)
	if err != nil {
		return toStatus(err)
	}
	defer c.farm.unregister(s)
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
			c.farm.heard(s.nodeID)
			select {
			case msgs <- m:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for m := range msgs {
		if err := c.handle(stream.Context(), s, m); err != nil {
			return toStatus(err)
		}
		if s.fenced.Load() {
			return toStatus(fmt.Errorf("this node was declared lost and its tasks fenced: reconnect with a new Hello: %w", errFenced))
		}
	}
	return nil
}

// hello records a node and its drives, raises its epoch for a new imager
// instance, answers HelloAck and stops held tasks it no longer runs.
func (c *Controller) hello(ctx context.Context, stream imagefarmv1.ImagerService_ConnectServer, h *imagefarmv1.Hello) (*session, error) {
	if err := checkHello(h); err != nil {
		return nil, err
	}
	if err := c.checkNodePeer(ctx, h.GetNodeId()); err != nil {
		return nil, err
	}
	var fenced string // why the node's epoch moved on under a live instance, if it did
	node, err := c.st.UpdateNode(ctx, h.GetNodeId(), func(n *imagefarmv1.Node) error {
		fenced = ""
		if n.InstanceId != h.GetInstanceId() || n.State != imagefarmv1.NodeState_NODE_STATE_ONLINE {
			n.Epoch++ // a restarted or returning imager: everything older is fenced
			fenced = takeover(n, h.GetInstanceId())
		}
		n.Id, n.Pool, n.Labels, n.Version, n.InstanceId = h.GetNodeId(), h.GetPool(), h.GetLabels(), h.GetVersion(), h.GetInstanceId()
		n.State, n.LastHeartbeatTime, n.DriveCount = imagefarmv1.NodeState_NODE_STATE_ONLINE, now(), uint32(len(h.GetDrives()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := c.core.SyncDrives(ctx, h.GetNodeId(), h.GetDrives()); err != nil {
		return nil, err
	}
	if fenced != "" {
		c.fenceByHello(ctx, node, fenced)
	}
	s := c.register(node, stream)
	if err := s.send(&imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_HelloAck{HelloAck: &imagefarmv1.HelloAck{
		Epoch: node.GetEpoch(), LastSeq: c.farm.lastApplied(s.key()), HeartbeatInterval: c.heartbeatInterval(), HeartbeatTtl: durationpb.New(c.cfg.HeartbeatTTL)}}}); err != nil {
		return nil, err
	}
	for _, held := range h.GetHeldTasks() {
		if held.GetEpoch() != node.GetEpoch() {
			s.stop(held.GetTaskId(), held.GetEpoch(), imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH, "the node's epoch moved on: this task was fenced")
		}
	}
	c.log.Info("imager connected", "node_id", node.GetId(), "epoch", node.GetEpoch(), "drives", len(h.GetDrives()))
	c.wake()
	return s, nil
}

// takeover says why a Hello from instance fences what node n held before
// it, or "" when nothing is fenced: a node's first Hello, or one after the
// node was declared lost (loseNode fenced it then, and recorded it).
func takeover(n *imagefarmv1.Node, instance string) string {
	switch {
	case n.GetInstanceId() == "" || n.GetState() == imagefarmv1.NodeState_NODE_STATE_LOST:
		return ""
	case n.GetInstanceId() != instance:
		return fmt.Sprintf("imager instance %s replaced instance %s", ident.Quote(instance), ident.Quote(n.GetInstanceId()))
	}
	return fmt.Sprintf("imager instance %s reconnected to the node in state %v", ident.Quote(instance), n.GetState())
}

// register makes a session of node's imager on stream the node's session.
func (c *Controller) register(node *imagefarmv1.Node, stream imagefarmv1.ImagerService_ConnectServer) *session {
	s := &session{nodeID: node.GetId(), instanceID: node.GetInstanceId(), epoch: node.GetEpoch(), stream: stream}
	c.farm.register(s)
	return s
}
