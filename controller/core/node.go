package core

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Node states, short, for the table.
const (
	nodeNone   = imagefarmv1.NodeState_NODE_STATE_UNSPECIFIED
	nodeOnline = imagefarmv1.NodeState_NODE_STATE_ONLINE
	nodeLost   = imagefarmv1.NodeState_NODE_STATE_LOST
)

// nodeMoves is the table of a node's legal state changes.
//
//	(none) → ONLINE          its imager's first Hello
//	ONLINE → LOST            silent for the heartbeat TTL: its epoch rises
//	LOST   → ONLINE          a Hello again
//
// ONLINE is written again on every heartbeat and Hello, LOST when a
// heartbeat that was on its way when the node was fenced lands. DRAINING
// is in the API for a node that finishes its tasks and takes no new ones;
// nothing drains a node yet, so no move leads to it.
var nodeMoves = machine[imagefarmv1.NodeState]{entity: "node", moves: map[imagefarmv1.NodeState][]imagefarmv1.NodeState{
	nodeNone:   {nodeOnline},
	nodeOnline: {nodeOnline, nodeLost},
	nodeLost:   {nodeLost, nodeOnline},
}}

func (c *Core) updateNode(ctx context.Context, nodeID string, change func(*imagefarmv1.Node) error) (*imagefarmv1.Node, error) {
	return apply(nodeMoves, nodeID, func(fn func(*imagefarmv1.Node) error) (*imagefarmv1.Node, error) {
		return c.st.UpdateNode(ctx, nodeID, fn)
	}, change)
}

// Hello records a node as its imager announces itself, ONLINE, and its
// drives. A new imager instance, or one returning to a node that was not
// ONLINE, raises the node's epoch, so that everything assigned before is
// fenced. When that fenced a live instance, fenced says how (and the
// caller ends what it held); it is "" for a node's first Hello and for one
// after the node was declared lost (LoseNode fenced it then).
func (c *Core) Hello(ctx context.Context, h *imagefarmv1.Hello) (node *imagefarmv1.Node, fenced string, err error) {
	node, err = c.updateNode(ctx, h.GetNodeId(), func(n *imagefarmv1.Node) error {
		fenced = ""
		if n.InstanceId != h.GetInstanceId() || n.State != nodeOnline {
			n.Epoch++ // a restarted or returning imager: everything older is fenced
			fenced = takeover(n, h.GetInstanceId())
		}
		n.Id, n.Pool, n.Labels, n.Version, n.InstanceId = h.GetNodeId(), h.GetPool(), h.GetLabels(), h.GetVersion(), h.GetInstanceId()
		n.State, n.LastHeartbeatTime, n.DriveCount = nodeOnline, timestamppb.Now(), uint32(len(h.GetDrives()))
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if err := c.SyncDrives(ctx, h.GetNodeId(), h.GetDrives()); err != nil {
		return nil, "", err
	}
	return node, fenced, nil
}

// takeover says why a Hello from instance fences what node n held before
// it, or "" when nothing is fenced: a node's first Hello, or one after the
// node was declared lost.
func takeover(n *imagefarmv1.Node, instance string) string {
	switch {
	case n.GetInstanceId() == "" || n.GetState() == nodeLost:
		return ""
	case n.GetInstanceId() != instance:
		return fmt.Sprintf("imager instance %s replaced instance %s", ident.Quote(instance), ident.Quote(n.GetInstanceId()))
	}
	return fmt.Sprintf("imager instance %s reconnected to the node in state %v", ident.Quote(instance), n.GetState())
}

// Heartbeat records that a node's imager was heard.
func (c *Core) Heartbeat(ctx context.Context, nodeID string) error {
	_, err := c.updateNode(ctx, nodeID, func(n *imagefarmv1.Node) error {
		n.LastHeartbeatTime = timestamppb.Now()
		return nil
	})
	return err
}

// LoseNode fences a silent node: it is LOST and its epoch rises, so its
// late reports and redelivered assignments are refused. Its tasks are
// LoseTasks'.
func (c *Core) LoseNode(ctx context.Context, nodeID string) (*imagefarmv1.Node, error) {
	return c.updateNode(ctx, nodeID, func(n *imagefarmv1.Node) error {
		n.State = nodeLost
		n.Epoch++
		return nil
	})
}
