package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// liveness declares lost the nodes silent for longer than the heartbeat
// TTL, through the core.
type liveness struct {
	metrics *apiMetrics // counts the nodes lost
	st      *state.Store
	core    *core.Core
	view    *storeView
	live    *farmView
	audit   auditor
	ttl     time.Duration
	log     *slog.Logger
	wake    func() // asks the placer to run soon
}

// Run declares lost the nodes silent for longer than the TTL.
func (l *liveness) Run(ctx context.Context) error {
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
		nodes, err := l.st.ListNodes(ctx, state.NodeFilter{})
		if err != nil {
			continue
		}
		farm := buildFarm(nodes, nil, nil) // heartbeats are all Lost needs
		l.live.withHeard(farm, started)
		lost := scheduler.Lost(farm, time.Now(), l.ttl)
		if len(lost) == 0 {
			continue
		}
		_, jobs, err := l.view.snapshot(ctx) // the jobs, only when a node's tasks must end
		if err != nil {
			continue
		}
		for _, id := range lost {
			if err := l.loseNode(ctx, id, jobs); err != nil {
				l.log.Warn("mark node lost", "node_id", id, "error", err)
			}
		}
	}
}

// loseNode fences a silent node: its epoch rises, so its late reports and
// redelivered assignments are refused, and its unfinished tasks end LOST.
func (l *liveness) loseNode(ctx context.Context, nodeID string, jobs []scheduler.Job) error {
	node, err := l.core.LoseNode(ctx, nodeID)
	if err != nil {
		return err
	}
	l.log.Warn("node lost: no heartbeat", "node_id", nodeID, "ttl", l.ttl)
	l.metrics.nodeLost()
	l.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: controllerActor, Action: imagefarmv1.AuditAction_AUDIT_ACTION_NODE_FENCED,
		NodeId: nodeID, Message: fmt.Sprintf("no heartbeat for %s: epoch raised to %d", l.ttl, node.GetEpoch())})
	l.live.fence(nodeID)
	if err := l.core.LoseTasks(ctx, nodeID, node.GetEpoch(), jobs, "node "+nodeID+" stopped sending heartbeats"); err != nil {
		return err
	}
	l.wake()
	return nil
}
