package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// livenessLoop declares lost the nodes silent for longer than the TTL.
func (c *Controller) livenessLoop(ctx context.Context) error {
	// Every node gets a full TTL from this controller's start: imagers
	// reconnecting after a controller restart must not be lost for the
	// time the controller was away.
	started := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		nodes, err := c.st.ListNodes(ctx, state.NodeFilter{})
		if err != nil {
			continue
		}
		farm := buildFarm(nodes, nil, nil) // heartbeats are all Lost needs
		c.farm.withHeard(farm, started)
		lost := scheduler.Lost(farm, time.Now(), c.cfg.HeartbeatTTL)
		if len(lost) == 0 {
			continue
		}
		_, jobs, err := c.snapshot(ctx) // the jobs, only when a node's tasks must end
		if err != nil {
			continue
		}
		for _, id := range lost {
			if err := c.loseNode(ctx, id, jobs); err != nil {
				c.log.Warn("mark node lost", "node_id", id, "error", err)
			}
		}
	}
}

// loseNode fences a silent node: its epoch rises, so its late reports and
// redelivered assignments are refused, and its unfinished tasks end LOST.
func (c *Controller) loseNode(ctx context.Context, nodeID string, jobs []scheduler.Job) error {
	node, err := c.st.UpdateNode(ctx, nodeID, func(n *imagefarmv1.Node) error {
		n.State = imagefarmv1.NodeState_NODE_STATE_LOST
		n.Epoch++
		return nil
	})
	if err != nil {
		return err
	}
	c.log.Warn("node lost: no heartbeat", "node_id", nodeID, "ttl", c.cfg.HeartbeatTTL)
	c.record(ctx, &imagefarmv1.AuditRecord{Actor: controllerActor, Action: imagefarmv1.AuditAction_AUDIT_ACTION_NODE_FENCED,
		NodeId: nodeID, Message: fmt.Sprintf("no heartbeat for %s: epoch raised to %d", c.cfg.HeartbeatTTL, node.GetEpoch())})
	c.farm.fence(nodeID)
	if err := c.core.LoseTasks(ctx, nodeID, node.GetEpoch(), jobs, "node "+nodeID+" stopped sending heartbeats"); err != nil {
		return err
	}
	c.wake()
	return nil
}

// fenceByHello records that a Hello raised the epoch of a node whose
// imager was live (why says how), and ends the tasks it held then: their
// reports are refused from now on, so they could never end otherwise.
func (c *Controller) fenceByHello(ctx context.Context, node *imagefarmv1.Node, why string) {
	// A restarted imager does this every time: the audit trail keeps it.
	c.log.Info("node fenced by a new Hello", "node_id", node.GetId(), "reason", why)
	c.record(ctx, &imagefarmv1.AuditRecord{Actor: nodeActor(node.GetId()), Action: imagefarmv1.AuditAction_AUDIT_ACTION_NODE_FENCED,
		NodeId: node.GetId(), Message: fmt.Sprintf("%s: epoch raised to %d", why, node.GetEpoch())})
	_, jobs, err := c.snapshot(ctx)
	if err == nil {
		err = c.core.LoseTasks(ctx, node.GetId(), node.GetEpoch(), jobs, why)
	}
	if err != nil {
		c.log.Warn("end fenced tasks", "node_id", node.GetId(), "error", err)
	}
}
