package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// scheduleLoop places open jobs whenever something changed, and every
// second anyway, so standing orders take drives inserted meanwhile.
func (c *Controller) scheduleLoop(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-c.kick:
		}
		if err := c.schedule(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("scheduling failed; will retry", "error", err)
		}
	}
}

func (c *Controller) schedule(ctx context.Context) error {
	farm, tasks, err := c.farmSnapshot(ctx)
	if err != nil {
		return err
	}
	jobs, stored, err := c.openJobs(ctx, tasks)
	if err != nil {
		return err
	}
	placed := scheduler.Place(jobs, farm)
	for _, p := range placed {
		if err := c.assign(ctx, p); err != nil {
			c.log.Warn("assign failed", "job_id", p.JobID, "node_id", p.NodeID, "drive", p.Drive.ID, "error", err)
		}
	}
	waiting := scheduler.Waiting(jobs, farm, placed)
	for _, j := range jobs {
		if waiting[j.ID] != stored[j.ID] {
			c.setWaiting(ctx, j.ID, waiting[j.ID])
		}
		if err := c.settleJob(ctx, j.ID); err != nil {
			c.log.Warn("settle job failed", "job_id", j.ID, "error", err)
		}
	}
	return nil
}

// setWaiting stores why a job waits, "" when it no longer does; watchers
// see the change as a job event. A job that became final meanwhile keeps
// none (the store clears it).
func (c *Controller) setWaiting(ctx context.Context, jobID, why string) {
	_, err := c.st.UpdateJob(ctx, jobID, func(j *imagefarmv1.Job) error {
		j.WaitingReason = why
		return nil
	})
	if err != nil {
		c.log.Warn("store why a job waits", "job_id", jobID, "error", err)
	}
}

// errClaimed means a drive already has a task: a placement made from a
// view that missed it is dropped.
var errClaimed = errors.New("controller: drive already has a task")

// assign records a task for a placement and dispatches it to its node. The
// drive is claimed first, atomically on its record, so that no drive ever
// gets two tasks at once whatever view of the farm the placement came from.
func (c *Controller) assign(ctx context.Context, p scheduler.Placement) error {
	c.placing.Lock() // not while CancelJob ends the job's tasks
	defer c.placing.Unlock()
	job, err := c.st.GetJob(ctx, p.JobID)
	if err != nil || job.GetState().Final() {
		return err
	}
	id := taskID(p.JobID)
	if job.GetTargets().GetDrives() != nil {
		id = explicitTaskID(p.JobID, p.NodeID, p.Drive.ID) // one task per named drive, ever
	}
	if err := c.claim(ctx, p.NodeID, p.Drive, id); err != nil {
		return err
	}
	t := &imagefarmv1.Task{
		Id: id, JobId: p.JobID, NodeId: p.NodeID, Slot: p.Slot, SlotLabel: p.SlotLabel,
		Drive: &imagefarmv1.DriveIdentity{Id: p.Drive.ID, Serial: p.Drive.Serial, SizeBytes: p.Drive.Size, Model: p.Drive.Model},
		State: imagefarmv1.TaskState_TASK_STATE_ASSIGNED, Epoch: p.Epoch, Attempt: uint32(len(job.GetTasks()) + 1),
	}
	if _, err := c.st.CreateTask(ctx, t); err != nil {
		c.release(ctx, p.NodeID, p.Drive.ID, id)
		if errors.Is(err, state.ErrExists) {
			return nil // placed before from a view that missed the task
		}
		return err
	}
	if err := c.markRunning(ctx, t); err != nil {
		return err
	}
	_, err = c.pub.Publish(ctx, &imagefarmv1.TaskAssignment{
		TaskId: t.GetId(), JobId: job.GetId(), NodeId: p.NodeID, Epoch: p.Epoch, Drive: t.GetDrive(),
		ManifestDigest: job.GetManifestDigest(), ImageRef: job.GetImageRef(), Options: job.GetOptions(), AssignTime: now(),
	})
	return err
}

// markRunning moves a pending job to RUNNING as its task t starts; if the
// job was canceled meanwhile, t is canceled at once.
func (c *Controller) markRunning(ctx context.Context, t *imagefarmv1.Task) error {
	job, err := c.st.UpdateJob(ctx, t.GetJobId(), func(j *imagefarmv1.Job) error {
		if j.State == imagefarmv1.JobState_JOB_STATE_PENDING {
			j.State = imagefarmv1.JobState_JOB_STATE_RUNNING
		}
		return nil
	})
	if err != nil {
		return err
	}
	if job.GetState() == imagefarmv1.JobState_JOB_STATE_CANCELED {
		c.cancelTask(ctx, controllerActor, t)
		return errClaimed
	}
	return nil
}

// claim gives a drive to a task if it has none and still holds the medium
// the placement was made for (a key swapped meanwhile is left for the next
// placement, which sees the new key).
func (c *Controller) claim(ctx context.Context, nodeID string, planned scheduler.DriveIdentity, taskID string) error {
	_, err := c.st.UpdateDriveIfStored(ctx, nodeID, planned.ID, func(d *imagefarmv1.Drive) error {
		if d.TaskId != "" && d.TaskId != taskID {
			return fmt.Errorf("%w: %s/%s has %s", errClaimed, nodeID, planned.ID, d.TaskId)
		}
		if d.Serial != planned.Serial || d.SizeBytes != planned.Size {
			return fmt.Errorf("%w: %s/%s holds another medium now", errClaimed, nodeID, planned.ID)
		}
		d.TaskId, d.State = taskID, imagefarmv1.DriveState_DRIVE_STATE_BUSY
		return nil
	})
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("%w: %s/%s was pulled", errClaimed, nodeID, planned.ID)
	}
	return err
}

// release frees a drive claimed by taskID, recording it as its last task.
// A drive pulled meanwhile has nothing to free. Any other failure (NATS
// away) is returned, and logged: a claim left behind would keep the drive
// busy for good, so callers that can be asked again (a result the imager
// re-sends) must fail and be.
func (c *Controller) release(ctx context.Context, nodeID, driveID, taskID string) error {
	_, err := c.st.UpdateDriveIfStored(ctx, nodeID, driveID, func(d *imagefarmv1.Drive) error {
		if d.TaskId == taskID {
			d.TaskId, d.LastTaskId, d.State = "", taskID, imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE
		}
		return nil
	})
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	if err != nil {
		c.log.Warn("release drive", "node_id", nodeID, "drive", driveID, "task_id", taskID, "error", err)
	}
	return err
}

// settleJob gives a job its final state once its tasks say so.
func (c *Controller) settleJob(ctx context.Context, jobID string) error {
	job, err := c.st.GetJob(ctx, jobID)
	if err != nil || job.GetState().Final() {
		return err
	}
	final := jobOutcome(job)
	if final == imagefarmv1.JobState_JOB_STATE_UNSPECIFIED {
		return nil
	}
	_, err = c.st.UpdateJob(ctx, jobID, func(j *imagefarmv1.Job) error {
		if !j.State.Final() {
			j.State, j.FinishTime = final, now()
		}
		return nil
	})
	return err
}

// jobOutcome is the final state a job has reached, or UNSPECIFIED while
// it has work left. An explicit job ends when every drive's task has
// ended; a standing order when its count of drives is verified; a job with
// a canceled task is being canceled.
func jobOutcome(job *imagefarmv1.Job) imagefarmv1.JobState {
	counts := state.CountTasks(job.GetTasks())
	open := 0
	for _, t := range job.GetTasks() {
		if !t.GetState().Final() {
			open++
		}
	}
	if counts.GetCanceled() > 0 { // CancelJob, or an imager shutting down mid-write
		if open == 0 {
			return imagefarmv1.JobState_JOB_STATE_CANCELED
		}
		return imagefarmv1.JobState_JOB_STATE_UNSPECIFIED
	}
	if so := job.GetTargets().GetStandingOrder(); so != nil {
		if counts.GetDone() >= so.GetCount() {
			return imagefarmv1.JobState_JOB_STATE_SUCCEEDED
		}
		return imagefarmv1.JobState_JOB_STATE_UNSPECIFIED
	}
	want := len(job.GetTargets().GetDrives().GetDriveIds())
	switch {
	case len(job.GetTasks()) < want || open > 0:
		return imagefarmv1.JobState_JOB_STATE_UNSPECIFIED
	case int(counts.GetDone()) == want:
		return imagefarmv1.JobState_JOB_STATE_SUCCEEDED
	case counts.GetDone() == 0:
		return imagefarmv1.JobState_JOB_STATE_FAILED
	}
	return imagefarmv1.JobState_JOB_STATE_PARTIAL
}

func openJobsFilter(token string) state.JobFilter {
	return state.JobFilter{States: []imagefarmv1.JobState{imagefarmv1.JobState_JOB_STATE_PENDING,
		imagefarmv1.JobState_JOB_STATE_RUNNING}, PageSize: state.MaxPageSize, PageToken: token}
}
