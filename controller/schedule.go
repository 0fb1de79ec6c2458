package controller

import (
	"context"
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
			if err := c.core.SetWaiting(ctx, j.ID, waiting[j.ID]); err != nil {
				c.log.Warn("store why a job waits", "job_id", j.ID, "error", err)
			}
		}
		if err := c.core.SettleJob(ctx, j.ID); err != nil {
			c.log.Warn("settle job failed", "job_id", j.ID, "error", err)
		}
	}
	return nil
}

// assign records a task for a placement (core.Assign) and dispatches it
// to its node.
func (c *Controller) assign(ctx context.Context, p scheduler.Placement) error {
	t, job, err := c.core.Assign(ctx, p)
	if t == nil || err != nil {
		return err
	}
	_, err = c.pub.Publish(ctx, &imagefarmv1.TaskAssignment{
		TaskId: t.GetId(), JobId: job.GetId(), NodeId: p.NodeID, Epoch: p.Epoch, Drive: t.GetDrive(),
		ManifestDigest: job.GetManifestDigest(), ImageRef: job.GetImageRef(), Options: job.GetOptions(), AssignTime: now(),
	})
	return err
}

func openJobsFilter(token string) state.JobFilter {
	return state.JobFilter{States: []imagefarmv1.JobState{imagefarmv1.JobState_JOB_STATE_PENDING,
		imagefarmv1.JobState_JOB_STATE_RUNNING}, PageSize: state.MaxPageSize, PageToken: token}
}
