package core

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Task states, short, for the table.
const (
	taskNone      = imagefarmv1.TaskState_TASK_STATE_UNSPECIFIED
	taskAssigned  = imagefarmv1.TaskState_TASK_STATE_ASSIGNED
	taskFetching  = imagefarmv1.TaskState_TASK_STATE_FETCHING
	taskWriting   = imagefarmv1.TaskState_TASK_STATE_WRITING
	taskVerifying = imagefarmv1.TaskState_TASK_STATE_VERIFYING
	taskDone      = imagefarmv1.TaskState_TASK_STATE_DONE
	taskFailed    = imagefarmv1.TaskState_TASK_STATE_FAILED
	taskCanceled  = imagefarmv1.TaskState_TASK_STATE_CANCELED
	taskLost      = imagefarmv1.TaskState_TASK_STATE_LOST
)

// taskMoves is the table of a task's legal state changes.
//
//	(none)   → ASSIGNED                      placed and dispatched (Assign)
//	(none)   → FAILED                        refused at placement by a rule of
//	                                         a netbooted device (its model, its
//	                                         disks): nothing written (RefuseTask)
//	ASSIGNED → FETCHING → WRITING → VERIFYING  its imager's progress, forward
//	                                         only; a phase may be skipped
//	                                         (a report is coalesced, the
//	                                         image was in the node cache)
//	any of those → DONE, FAILED, CANCELED    its imager's result
//	any of those → CANCELED                  CancelJob
//	any of those → LOST                      its node was fenced
//
// QUEUED is in the API for a task stored before it is dispatched; this
// controller places and dispatches a task in one step, so none is ever
// QUEUED. A final task never changes again: it no longer holds its drive,
// and a late report for it is refused.
var taskMoves = machine[imagefarmv1.TaskState]{entity: "task", moves: map[imagefarmv1.TaskState][]imagefarmv1.TaskState{
	taskNone:      {taskAssigned, taskFailed},
	taskAssigned:  {taskAssigned, taskFetching, taskWriting, taskVerifying, taskDone, taskFailed, taskCanceled, taskLost},
	taskFetching:  {taskFetching, taskWriting, taskVerifying, taskDone, taskFailed, taskCanceled, taskLost},
	taskWriting:   {taskWriting, taskVerifying, taskDone, taskFailed, taskCanceled, taskLost},
	taskVerifying: {taskVerifying, taskDone, taskFailed, taskCanceled, taskLost},
}}

// ErrClaimed means a placement's drive cannot be claimed: it has a task,
// holds another medium, was pulled or is refused by its node now. A
// placement made from a view that missed that is dropped.
var ErrClaimed = errors.New("core: drive cannot be claimed")

// Assign records a task for placement p, claiming its drive first,
// atomically on the drive's record, so that no drive ever gets two tasks
// at once whatever view of the farm p came from, and marks the job
// RUNNING. It returns the task and its job for dispatch, or a nil task
// when there is nothing to dispatch (the job ended, the task was placed
// before). A placement that lost its drive meanwhile fails with ErrClaimed.
func (c *Core) Assign(ctx context.Context, p scheduler.Placement) (*imagefarmv1.Task, *imagefarmv1.Job, error) {
	c.placing.Lock() // not while CancelJob ends the job's tasks
	defer c.placing.Unlock()
	job, err := c.st.GetJob(ctx, p.JobID)
	if err != nil || job.GetState().Final() {
		return nil, nil, err
	}
	id := taskID(p.JobID)
	if job.GetTargets().GetDrives() != nil {
		id = explicitTaskID(p.JobID, p.NodeID, p.Drive.ID) // one task per named drive, ever
	}
	if err := c.claim(ctx, p.NodeID, p.Drive, id); err != nil {
		return nil, nil, err
	}
	t := &imagefarmv1.Task{
		Id: id, JobId: p.JobID, NodeId: p.NodeID, Slot: p.Slot, SlotLabel: p.SlotLabel,
		Drive: &imagefarmv1.DriveIdentity{Id: p.Drive.ID, Serial: p.Drive.Serial, SizeBytes: p.Drive.Size, Model: p.Drive.Model},
		State: taskAssigned, Epoch: p.Epoch, Attempt: uint32(len(job.GetTasks()) + 1),
	}
	if _, err := c.createTask(ctx, t); err != nil {
		c.Release(ctx, p.NodeID, p.Drive.ID, id)
		if errors.Is(err, state.ErrExists) {
			return nil, nil, nil // placed before from a view that missed the task
		}
		return nil, nil, err
	}
	started, err := c.startJob(ctx, p.JobID)
	if err != nil {
		return nil, nil, err
	}
	if started.GetState() == jobCanceled { // canceled meanwhile: so is t
		c.cancelTask(ctx, ControllerActor, t)
		return nil, nil, ErrClaimed
	}
	return t, job, nil
}

// Progress stores a phase change its imager reported for task t (state
// and total bytes; the bytes done are live-only). A move the table refuses
// (the task ended meanwhile, or a report going back) is returned as a
// *MoveError and changes nothing.
func (c *Core) Progress(ctx context.Context, t *imagefarmv1.Task, p *imagefarmv1.TaskProgress) error {
	_, err := c.updateTask(ctx, t.GetJobId(), t.GetId(), func(t *imagefarmv1.Task) error {
		t.State, t.BytesTotal = p.GetState(), p.GetBytesTotal()
		if t.StartTime == nil {
			t.StartTime = timestamppb.Now()
		}
		return nil
	})
	return err
}

// EndTask ends task t as its node's result r says (who is the node, for
// the audit trail), frees its drive and settles its job. For a task that
// had already ended (a result sent again) it only does what the first one
// may have left undone: the task stays as it ended.
func (c *Core) EndTask(ctx context.Context, who string, t *imagefarmv1.Task, r *imagefarmv1.TaskResult) error {
	ended, err := c.updateTask(ctx, t.GetJobId(), t.GetId(), func(t *imagefarmv1.Task) error {
		t.State, t.VerifiedDigest, t.Failure, t.FinishTime = r.GetState(), r.GetVerifiedDigest(), r.GetFailure(), timestamppb.Now()
		t.BytesDone, t.ResetReport, t.Capture = r.GetBytesWritten(), r.GetResetReport(), r.GetCapture()
		if d := r.GetDuration().AsDuration(); d > 0 {
			t.BytesPerSecond = uint64(float64(r.GetBytesWritten()) / d.Seconds())
		}
		return nil
	})
	if ended != nil { // stored, even if its event is pending
		c.recordTaskEnd(ctx, who, ended)
	}
	if err != nil && !errors.Is(err, ErrIllegalMove) {
		return err
	}
	if err := c.Release(ctx, t.GetNodeId(), t.GetDrive().GetId(), t.GetId()); err != nil {
		return err
	}
	return c.SettleJob(ctx, t.GetJobId())
}

// LoseTasks ends LOST the unfinished tasks of node nodeID (among jobs)
// assigned before its epoch rose to epoch, frees their drives and settles
// their jobs. A standing order then takes other drives on the next
// placement.
func (c *Core) LoseTasks(ctx context.Context, nodeID string, epoch uint64, jobs []scheduler.Job, why string) error {
	for _, lt := range scheduler.LostTasks(nodeID, jobs) {
		t, err := c.updateTask(ctx, lt.JobID, lt.TaskID, func(t *imagefarmv1.Task) error {
			if t.Epoch >= epoch {
				return errNotFenced
			}
			t.State, t.FinishTime = taskLost, timestamppb.Now()
			t.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_NODE_LOST, Message: why}
			return nil
		})
		if t != nil {
			c.recordTaskEnd(ctx, ControllerActor, t)
		}
		switch {
		case errors.Is(err, errNotFenced):
			continue // assigned under the new epoch
		case err != nil && !errors.Is(err, ErrIllegalMove): // refused: it ended meanwhile; free its drive all the same
			return err
		}
		if err := c.Release(ctx, lt.NodeID, lt.DriveID, lt.TaskID); err != nil {
			return err
		}
		if err := c.SettleJob(ctx, lt.JobID); err != nil {
			return err
		}
	}
	return nil
}

// errNotFenced: a task assigned under the node's new epoch is not ended by
// the fencing of its old one.
var errNotFenced = errors.New("core: task assigned under the new epoch")

// cancelTask ends t CANCELED on behalf of who, and stops it on its node.
// It reports whether it ended the task (false: the task had ended).
func (c *Core) cancelTask(ctx context.Context, who string, t *imagefarmv1.Task) bool {
	canceled, err := c.updateTask(ctx, t.GetJobId(), t.GetId(), func(t *imagefarmv1.Task) error {
		t.State, t.FinishTime = taskCanceled, timestamppb.Now()
		return nil
	})
	if canceled != nil {
		c.recordTaskEnd(ctx, who, canceled)
	}
	if err != nil && !errors.Is(err, ErrIllegalMove) {
		c.log.Warn("cancel task", "task_id", t.GetId(), "error", err)
	}
	c.Release(ctx, t.GetNodeId(), t.GetDrive().GetId(), t.GetId())
	c.stop.StopTask(ctx, t, imagefarmv1.StopReason_STOP_REASON_CANCELED, "job canceled")
	return canceled != nil && err == nil
}

// ControllerActor is the actor of what the controller decides by itself:
// fencing a silent node, ending its tasks.
const ControllerActor = "controller"
