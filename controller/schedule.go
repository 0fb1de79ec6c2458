package controller

import (
	"context"
	"log/slog"
	"maps"
	"time"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/page"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// placer places open jobs on free drives (scheduler.Place), records each
// placement through the core and dispatches it to its node.
type placer struct {
	core *core.Core
	view *storeView
	pub  *wire.Publisher
	log  *slog.Logger
	kick chan struct{} // wakes it
}

// newPlacer returns a placer; Run starts it.
func newPlacer(c *core.Core, view *storeView, pub *wire.Publisher, log *slog.Logger) *placer {
	return &placer{core: c, view: view, pub: pub, log: log, kick: make(chan struct{}, 1)}
}

// wake asks the placer to run soon.
func (pl *placer) wake() {
	select {
	case pl.kick <- struct{}{}:
	default:
	}
}

// Run places open jobs whenever something changed (wake), and every second
// anyway, so standing orders take drives inserted meanwhile.
func (pl *placer) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-pl.kick:
		}
		if err := pl.schedule(ctx); err != nil && ctx.Err() == nil {
			pl.log.Warn("scheduling failed; will retry", "error", err)
		}
	}
}

// schedule is one placement pass: it places what it can, stores why each
// job short of drives waits, and settles jobs whose tasks have ended.
func (pl *placer) schedule(ctx context.Context) error {
	farm, tasks, err := pl.view.farmSnapshot(ctx)
	if err != nil {
		return err
	}
	jobs, stored, devWaiting, err := pl.view.openJobs(ctx, tasks)
	if err != nil {
		return err
	}
	placed := scheduler.Place(jobs, farm)
	for _, p := range placed {
		if err := pl.assign(ctx, p); err != nil {
			pl.log.Warn("assign failed", "job_id", p.JobID, "node_id", p.NodeID, "drive", p.Drive.ID, "error", err)
		}
	}
	waiting := scheduler.Waiting(jobs, farm, placed)
	maps.Copy(waiting, devWaiting) // device jobs wait for devices, not drives
	for _, j := range jobs {
		if waiting[j.ID] != stored[j.ID] {
			if err := pl.core.SetWaiting(ctx, j.ID, waiting[j.ID]); err != nil {
				pl.log.Warn("store why a job waits", "job_id", j.ID, "error", err)
			}
		}
		if err := pl.core.SettleJob(ctx, j.ID); err != nil {
			pl.log.Warn("settle job failed", "job_id", j.ID, "error", err)
		}
	}
	return nil
}

// assign records a task for a placement (core.Assign) and dispatches it
// to its node.
func (pl *placer) assign(ctx context.Context, p scheduler.Placement) error {
	t, job, err := pl.core.Assign(ctx, p)
	if t == nil || err != nil {
		return err
	}
	_, err = pl.pub.Publish(ctx, &imagefarmv1.TaskAssignment{
		TaskId: t.GetId(), JobId: job.GetId(), NodeId: p.NodeID, Epoch: p.Epoch, Drive: t.GetDrive(),
		ManifestDigest: job.GetManifestDigest(), ImageRef: job.GetImageRef(), Options: job.GetOptions(), AssignTime: now(),
	})
	return err
}

func openJobsFilter(token string) state.JobFilter {
	return state.JobFilter{States: []imagefarmv1.JobState{imagefarmv1.JobState_JOB_STATE_PENDING,
		imagefarmv1.JobState_JOB_STATE_RUNNING}, PageSize: page.MaxSize, PageToken: token}
}
