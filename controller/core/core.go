package core

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/controller/fleet"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Recorder appends a record to the audit trail and returns it as stored,
// or nil (having logged why) when it could not: the change it records
// stands either way.
type Recorder interface {
	Record(ctx context.Context, rec *imagefarmv1.AuditRecord) *imagefarmv1.AuditRecord
}

// Stopper tells the node of task t to stop it, over NATS and, when its
// imager is connected, over its status stream.
type Stopper interface {
	StopTask(ctx context.Context, t *imagefarmv1.Task, reason imagefarmv1.StopReason, msg string)
}

// Config is what a Core works with.
type Config struct {
	Store *state.Store
	Audit Recorder
	Stop  Stopper
	Log   *slog.Logger
	// Fleet keeps the models and rollouts; without it their changes fail.
	Fleet *fleet.Store
}

// Core owns the job, task and drive records: every change of one is a
// method here. It is safe for concurrent use and holds no goroutines.
type Core struct {
	st    *state.Store
	audit Recorder
	stop  Stopper
	log   *slog.Logger
	fleet *fleet.Store
	// placing is held while a task is placed and while CancelJob ends a
	// job's tasks, so that no task is placed on a job being canceled.
	placing sync.Mutex
}

// New returns a core over cfg's store.
func New(cfg Config) (*Core, error) {
	if cfg.Store == nil || cfg.Audit == nil || cfg.Stop == nil {
		return nil, errors.New("core: config needs a store, an audit recorder and a stopper")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Core{st: cfg.Store, audit: cfg.Audit, stop: cfg.Stop, log: cfg.Log, fleet: cfg.Fleet}, nil
}

// The typed writes: each is apply over one of the store's writes.

func (c *Core) createJob(ctx context.Context, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	return apply(jobMoves, job.GetId(), func(fn func(*imagefarmv1.Job) error) (*imagefarmv1.Job, error) {
		j := &imagefarmv1.Job{}
		if err := fn(j); err != nil {
			return nil, err
		}
		return c.st.CreateJob(ctx, j)
	}, func(j *imagefarmv1.Job) error { proto.Merge(j, job); return nil })
}

func (c *Core) updateJob(ctx context.Context, jobID string, change func(*imagefarmv1.Job) error) (*imagefarmv1.Job, error) {
	return apply(jobMoves, jobID, func(fn func(*imagefarmv1.Job) error) (*imagefarmv1.Job, error) {
		return c.st.UpdateJob(ctx, jobID, fn)
	}, change)
}

func (c *Core) createTask(ctx context.Context, task *imagefarmv1.Task) (*imagefarmv1.Task, error) {
	return apply(taskMoves, task.GetId(), func(fn func(*imagefarmv1.Task) error) (*imagefarmv1.Task, error) {
		t := &imagefarmv1.Task{}
		if err := fn(t); err != nil {
			return nil, err
		}
		return c.st.CreateTask(ctx, t)
	}, func(t *imagefarmv1.Task) error { proto.Merge(t, task); return nil })
}

func (c *Core) updateTask(ctx context.Context, jobID, taskID string, change func(*imagefarmv1.Task) error) (*imagefarmv1.Task, error) {
	return apply(taskMoves, taskID, func(fn func(*imagefarmv1.Task) error) (*imagefarmv1.Task, error) {
		return c.st.UpdateTask(ctx, jobID, taskID, fn)
	}, change)
}

// updateDrive changes a stored drive under the table of its writer (m:
// driveReports or driveClaims), or a new one when upsert says so (an
// imager reports its inventory); otherwise a drive that is not stored
// fails with state.ErrNotFound: what changes a drive's claim must not
// bring back a drive that was pulled.
func (c *Core) updateDrive(ctx context.Context, m machine[imagefarmv1.DriveState], nodeID, driveID string, upsert bool,
	change func(*imagefarmv1.Drive) error) (*imagefarmv1.Drive, error) {
	return apply(m, nodeID+"/"+driveID, func(fn func(*imagefarmv1.Drive) error) (*imagefarmv1.Drive, error) {
		if upsert {
			return c.st.UpdateDrive(ctx, nodeID, driveID, fn)
		}
		return c.st.UpdateDriveIfStored(ctx, nodeID, driveID, fn)
	}, change)
}
