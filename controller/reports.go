package controller

import (
	"context"
	"errors"
	"time"

	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// handle applies one message from an imager and acknowledges it.
func (c *Controller) handle(ctx context.Context, s *session, m *imagefarmv1.ConnectRequest) error {
	c.farm.mu.Lock()
	c.farm.seen[s.nodeID] = time.Now()
	dup := m.GetSeq() > 0 && m.GetSeq() <= c.farm.lastSeq[s.key()]
	c.farm.mu.Unlock()
	if !dup {
		if err := c.apply(ctx, s, m); err != nil {
			return err
		}
	}
	if m.GetSeq() == 0 {
		return nil
	}
	c.farm.mu.Lock()
	c.farm.lastSeq[s.key()] = max(c.farm.lastSeq[s.key()], m.GetSeq())
	c.farm.mu.Unlock()
	return s.send(&imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_Ack{Ack: &imagefarmv1.Ack{Seq: m.GetSeq()}}})
}

func (c *Controller) apply(ctx context.Context, s *session, m *imagefarmv1.ConnectRequest) error {
	switch b := m.GetBody().(type) {
	case *imagefarmv1.ConnectRequest_Heartbeat:
		_, err := c.st.UpdateNode(ctx, s.nodeID, func(n *imagefarmv1.Node) error {
			n.LastHeartbeatTime = now()
			return nil
		})
		return err
	case *imagefarmv1.ConnectRequest_DriveInserted:
		defer c.wake()
		return c.putDrive(ctx, s.nodeID, b.DriveInserted.GetDrive())
	case *imagefarmv1.ConnectRequest_DriveRemoved:
		err := c.st.DeleteDrive(ctx, s.nodeID, b.DriveRemoved.GetDriveId())
		if errors.Is(err, state.ErrNotFound) {
			return nil
		}
		return err
	case *imagefarmv1.ConnectRequest_TaskProgress:
		return c.progress(ctx, s, b.TaskProgress)
	case *imagefarmv1.ConnectRequest_TaskResult:
		return c.result(ctx, s, b.TaskResult)
	}
	return nil
}

// owned returns the task a node reports on if the node holds it at that
// epoch; otherwise it tells the imager to stop and returns nil.
func (c *Controller) owned(ctx context.Context, s *session, taskID string, epoch uint64) (*imagefarmv1.Task, error) {
	t, err := c.st.GetTask(ctx, jobOf(taskID), taskID)
	switch {
	case errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrInvalidID):
		c.log.Warn("imager reported a task it does not hold", "node_id", s.nodeID, "task_id", taskID)
		return nil, s.stop(taskID, epoch, imagefarmv1.StopReason_STOP_REASON_UNKNOWN_TASK, "no such task")
	case err != nil:
		return nil, err
	case t.GetNodeId() != s.nodeID || t.GetEpoch() != epoch || s.fenced.Load():
		c.log.Warn("imager reported a task it does not hold", "node_id", s.nodeID, "task_id", taskID, "epoch", epoch)
		return nil, s.stop(taskID, epoch, imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH, "this node does not hold the task at that epoch")
	}
	return t, nil
}

// progress keeps a task's bytes in memory and stores phase changes.
func (c *Controller) progress(ctx context.Context, s *session, p *imagefarmv1.TaskProgress) error {
	t, err := c.owned(ctx, s, p.GetTaskId(), p.GetEpoch())
	if t == nil || err != nil || finalTask(t.GetState()) {
		return err
	}
	c.farm.mu.Lock()
	c.farm.progress[t.GetId()] = &imagefarmv1.Task{Id: t.GetId(), JobId: t.GetJobId(), NodeId: t.GetNodeId(), Drive: t.GetDrive(),
		Slot: t.GetSlot(), SlotLabel: t.GetSlotLabel(), State: p.GetState(), Epoch: t.GetEpoch(),
		BytesDone: p.GetBytesDone(), BytesTotal: p.GetBytesTotal(), BytesPerSecond: p.GetBytesPerSecond()}
	c.farm.mu.Unlock()
	if p.GetState() == t.GetState() || finalTask(p.GetState()) {
		return nil
	}
	_, err = c.st.UpdateTask(ctx, t.GetJobId(), t.GetId(), func(t *imagefarmv1.Task) error {
		if !finalTask(t.State) {
			t.State, t.BytesTotal = p.GetState(), p.GetBytesTotal()
			if t.StartTime == nil {
				t.StartTime = now()
			}
		}
		return nil
	})
	return err
}

// result ends a task with what its imager reports, then its job if done.
func (c *Controller) result(ctx context.Context, s *session, r *imagefarmv1.TaskResult) error {
	t, err := c.owned(ctx, s, r.GetTaskId(), r.GetEpoch())
	if t == nil || err != nil || finalTask(t.GetState()) {
		return err // a result already applied (a re-send) changes nothing
	}
	if _, err := c.st.UpdateTask(ctx, t.GetJobId(), t.GetId(), func(t *imagefarmv1.Task) error {
		if !finalTask(t.State) {
			t.State, t.VerifiedDigest, t.Failure, t.FinishTime = r.GetState(), r.GetVerifiedDigest(), r.GetFailure(), now()
			t.BytesDone = r.GetBytesWritten()
			if d := r.GetDuration().AsDuration(); d > 0 {
				t.BytesPerSecond = uint64(float64(r.GetBytesWritten()) / d.Seconds())
			}
		}
		return nil
	}); err != nil {
		return err
	}
	c.farm.mu.Lock()
	delete(c.farm.progress, t.GetId())
	c.farm.mu.Unlock()
	c.release(ctx, s.nodeID, t.GetDrive().GetId(), t.GetId())
	defer c.wake()
	return c.settleJob(ctx, t.GetJobId())
}
