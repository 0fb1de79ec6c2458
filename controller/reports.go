package controller

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// handle applies one message from an imager and acknowledges it.
func (im *imagerServer) handle(ctx context.Context, s *session, m *imagefarmv1.ConnectRequest) error {
	if !im.live.applied(s.key(), m.GetSeq()) {
		if err := im.apply(ctx, s, m); err != nil {
			return err
		}
	}
	if m.GetSeq() == 0 {
		return nil
	}
	im.live.apply(s.key(), m.GetSeq())
	return s.send(&imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_Ack{Ack: &imagefarmv1.Ack{Seq: m.GetSeq()}}})
}

// apply applies one message from an imager. A report that cannot be true
// is dropped or, for a result, turned into a failure, but does not end the
// stream: the imager would resend it after reconnecting, for ever. Only a
// message that breaks the stream's protocol ends it.
func (im *imagerServer) apply(ctx context.Context, s *session, m *imagefarmv1.ConnectRequest) error {
	switch b := m.GetBody().(type) {
	case *imagefarmv1.ConnectRequest_Hello:
		return fmt.Errorf("a second Hello, for node %s, on the stream of node %s: open a new stream to say Hello again: %w",
			ident.Quote(b.Hello.GetNodeId()), s.nodeID, errProtocol)
	case *imagefarmv1.ConnectRequest_Heartbeat:
		return im.core.Heartbeat(ctx, s.nodeID)
	case *imagefarmv1.ConnectRequest_DriveInserted:
		defer im.wake()
		return im.dropBadDrive(s, im.core.PutDrive(ctx, s.nodeID, b.DriveInserted.GetDrive()))
	case *imagefarmv1.ConnectRequest_DriveRemoved:
		return im.dropBadDrive(s, im.core.RemoveDrive(ctx, s.nodeID, b.DriveRemoved.GetDriveId()))
	case *imagefarmv1.ConnectRequest_TaskProgress:
		return im.progress(ctx, s, b.TaskProgress)
	case *imagefarmv1.ConnectRequest_TaskResult:
		return im.result(ctx, s, b.TaskResult)
	}
	return nil
}

// dropBadDrive drops a drive report naming an id no drive record can have,
// or a state no drive can be in: there is nothing to apply it to.
func (im *imagerServer) dropBadDrive(s *session, err error) error {
	if errors.Is(err, state.ErrInvalidID) || errors.Is(err, core.ErrIllegalMove) {
		im.log.Warn("imager report on a bad drive id dropped", "node_id", s.nodeID, "error", err)
		return nil
	}
	return err
}

// owned returns the task a node reports on if the node holds it at that
// epoch; otherwise it tells the imager to stop and returns nil.
func (im *imagerServer) owned(ctx context.Context, s *session, taskID string, epoch uint64) (*imagefarmv1.Task, error) {
	t, err := im.st.GetTask(ctx, core.JobOf(taskID), taskID)
	if err != nil && !errors.Is(err, state.ErrNotFound) && !errors.Is(err, state.ErrInvalidID) {
		return nil, err
	}
	switch {
	case t.GetNodeId() != s.nodeID: // no such task (t is nil), or another node's
		im.log.Warn("imager reported a task it does not have", "node_id", s.nodeID, "task_id", taskID, "task_node_id", t.GetNodeId())
		return nil, s.stop(taskID, epoch, imagefarmv1.StopReason_STOP_REASON_UNKNOWN_TASK, "this node has no such task")
	case t.GetEpoch() != epoch || s.fenced.Load():
		im.log.Warn("imager reported a task it does not hold", "node_id", s.nodeID, "task_id", taskID, "epoch", epoch)
		return nil, s.stop(taskID, epoch, imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH, "this node does not hold the task at that epoch")
	}
	return t, nil
}

// progress keeps a task's bytes in memory and stores phase changes. A
// report that cannot be true of the task is dropped.
func (im *imagerServer) progress(ctx context.Context, s *session, p *imagefarmv1.TaskProgress) error {
	t, err := im.owned(ctx, s, p.GetTaskId(), p.GetEpoch())
	if t == nil || err != nil || t.GetState().Final() {
		return err
	}
	if !runningTask(p.GetState()) || p.GetBytesDone() > p.GetBytesTotal() || p.GetBytesTotal() > t.GetDrive().GetSizeBytes() {
		im.log.Warn("imager progress that cannot be true dropped", "node_id", s.nodeID, "task_id", t.GetId(),
			"state", p.GetState(), "bytes_done", p.GetBytesDone(), "bytes_total", p.GetBytesTotal())
		return nil
	}
	im.live.setProgress(&imagefarmv1.Task{Id: t.GetId(), JobId: t.GetJobId(), NodeId: t.GetNodeId(), Drive: t.GetDrive(),
		Slot: t.GetSlot(), SlotLabel: t.GetSlotLabel(), State: p.GetState(), Epoch: t.GetEpoch(),
		BytesDone: p.GetBytesDone(), BytesTotal: p.GetBytesTotal(), BytesPerSecond: p.GetBytesPerSecond()})
	if p.GetState() == t.GetState() {
		return nil
	}
	err = im.core.Progress(ctx, t, p)
	if errors.Is(err, core.ErrIllegalMove) { // ended meanwhile, or a report going back
		im.log.Warn("imager progress the task cannot make dropped", "node_id", s.nodeID, "task_id", t.GetId(), "error", err)
		return nil
	}
	return err
}

// runningTask reports whether s is a state an imager reports progress in.
func runningTask(s imagefarmv1.TaskState) bool {
	switch s {
	case imagefarmv1.TaskState_TASK_STATE_FETCHING, imagefarmv1.TaskState_TASK_STATE_WRITING, imagefarmv1.TaskState_TASK_STATE_VERIFYING:
		return true
	}
	return false
}

// result ends a task with what its imager reports, then its job if done.
func (im *imagerServer) result(ctx context.Context, s *session, r *imagefarmv1.TaskResult) error {
	t, err := im.owned(ctx, s, r.GetTaskId(), r.GetEpoch())
	if t == nil || err != nil {
		return err
	}
	first := !t.GetState().Final()
	if first { // a result sent again is not checked again: the task stays as it ended
		if r, err = im.plausible(ctx, s, t, r); err != nil {
			return err
		}
	}
	defer im.wake()
	err = im.core.EndTask(ctx, nodeActor(s.nodeID), t, r)
	im.live.dropProgress(t.GetId())
	if err == nil && first {
		im.metrics.taskEnded(r)
	}
	return err
}

// plausible returns r, or a FAILED result saying why r cannot be true of
// task t.
func (im *imagerServer) plausible(ctx context.Context, s *session, t *imagefarmv1.Task, r *imagefarmv1.TaskResult) (*imagefarmv1.TaskResult, error) {
	job, err := im.st.GetJobRecord(ctx, t.GetJobId())
	if err != nil {
		return nil, err
	}
	if isCaptureJob(job) { // it writes nothing, and only the controller ends it DONE, once it has stored it
		if r.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE || r.GetBytesWritten() > 0 {
			return im.implausibleResult(s, t, "a capture DONE, or bytes written by a capture"), nil
		}
		return r, nil
	}
	size, err := im.view.imageSize(ctx, job.GetManifestDigest())
	if err != nil { // the image was removed, or storage is away: the result still counts
		im.log.Warn("image size unknown, bytes written not checked", "task_id", t.GetId(), "error", err)
		size = math.MaxUint64
	}
	if why := implausible(r, job.GetManifestDigest(), size); why != "" {
		return im.implausibleResult(s, t, why), nil
	}
	return r, nil
}

// implausibleResult is the FAILED result that replaces one that cannot be
// true of task t, for the reason why.
func (im *imagerServer) implausibleResult(s *session, t *imagefarmv1.Task, why string) *imagefarmv1.TaskResult {
	im.log.Warn("imager result that cannot be true: task failed", "node_id", s.nodeID, "task_id", t.GetId(), "reason", why)
	return &imagefarmv1.TaskResult{State: imagefarmv1.TaskState_TASK_STATE_FAILED, Failure: &imagefarmv1.Failure{
		Reason: imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, Message: "the imager reported " + why}}
}

// implausible says why a result cannot be true of a task writing the image
// with this digest and size, or "" when it can be.
func implausible(r *imagefarmv1.TaskResult, digest string, size uint64) string {
	switch st := r.GetState(); {
	case st != imagefarmv1.TaskState_TASK_STATE_DONE && st != imagefarmv1.TaskState_TASK_STATE_FAILED &&
		st != imagefarmv1.TaskState_TASK_STATE_CANCELED:
		return fmt.Sprintf("a result in state %v, not DONE, FAILED or CANCELED", st)
	case r.GetBytesWritten() > size:
		return fmt.Sprintf("%d bytes written of a %d-byte image", r.GetBytesWritten(), size)
	case st == imagefarmv1.TaskState_TASK_STATE_DONE && r.GetVerifiedDigest() != digest:
		return fmt.Sprintf("DONE verified against %s, not the job's image %s", ident.Quote(r.GetVerifiedDigest()), digest)
	}
	return ""
}
