package core

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Job states, short, for the table.
const (
	jobNone      = imagefarmv1.JobState_JOB_STATE_UNSPECIFIED
	jobPending   = imagefarmv1.JobState_JOB_STATE_PENDING
	jobRunning   = imagefarmv1.JobState_JOB_STATE_RUNNING
	jobSucceeded = imagefarmv1.JobState_JOB_STATE_SUCCEEDED
	jobPartial   = imagefarmv1.JobState_JOB_STATE_PARTIAL
	jobFailed    = imagefarmv1.JobState_JOB_STATE_FAILED
	jobCanceled  = imagefarmv1.JobState_JOB_STATE_CANCELED
)

// jobMoves is the table of a job's legal state changes.
//
//	(none)  → PENDING                          SubmitJob
//	PENDING → RUNNING                          its first task is placed
//	PENDING, RUNNING → SUCCEEDED, PARTIAL,     its tasks say so (settle), or
//	                   FAILED, CANCELED        CancelJob
//
// A job may end while still PENDING: canceled before a task was placed, or
// settled when the write that marked it RUNNING failed. PENDING and RUNNING
// jobs are written again in the same state when why they wait changes; a
// final job never changes again.
var jobMoves = machine[imagefarmv1.JobState]{entity: "job", moves: map[imagefarmv1.JobState][]imagefarmv1.JobState{
	jobNone:    {jobPending},
	jobPending: {jobPending, jobRunning, jobSucceeded, jobPartial, jobFailed, jobCanceled},
	jobRunning: {jobRunning, jobSucceeded, jobPartial, jobFailed, jobCanceled},
}}

// ErrJobEnded is returned when a job that had ended is canceled.
var ErrJobEnded = errors.New("core: job already ended")

// CreateJob stores a new PENDING job, which the scheduler then places. It
// returns the job as stored even with an error when the job was stored
// and only its event is pending (state.ErrEventPending); a job with the
// same id fails with state.ErrExists.
func (c *Core) CreateJob(ctx context.Context, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	return c.createJob(ctx, job)
}

// SetWaiting stores why a job waits, "" when it no longer does; watchers
// see the change as a job event. A job that became final meanwhile keeps
// none (the store clears it).
func (c *Core) SetWaiting(ctx context.Context, jobID, why string) error {
	_, err := c.updateJob(ctx, jobID, func(j *imagefarmv1.Job) error {
		j.WaitingReason = why
		return nil
	})
	if errors.Is(err, ErrIllegalMove) {
		return nil // final meanwhile: it waits for nothing
	}
	return err
}

// startJob moves a PENDING job to RUNNING as its first task is placed and
// returns it; a job already RUNNING or final is returned as it is.
func (c *Core) startJob(ctx context.Context, jobID string) (*imagefarmv1.Job, error) {
	job, err := c.updateJob(ctx, jobID, func(j *imagefarmv1.Job) error {
		if j.State == jobPending {
			j.State = jobRunning
		}
		return nil
	})
	if errors.Is(err, ErrIllegalMove) { // final: nothing to start
		return c.st.GetJobRecord(ctx, jobID)
	}
	return job, err
}

// SettleJob gives a job its final state once its tasks say so.
func (c *Core) SettleJob(ctx context.Context, jobID string) error {
	job, err := c.st.GetJob(ctx, jobID)
	if err != nil || job.GetState().Final() {
		return err
	}
	final := jobOutcome(job)
	if final == jobNone {
		return nil
	}
	_, err = c.updateJob(ctx, jobID, func(j *imagefarmv1.Job) error {
		j.State, j.FinishTime = final, timestamppb.Now()
		return nil
	})
	if errors.Is(err, ErrIllegalMove) {
		return nil // settled or canceled meanwhile
	}
	return err
}

// CancelJob ends the job's open tasks CANCELED on behalf of who, stopping
// them on their nodes, then the job. A job that had already ended (by
// itself or by another cancel) is refused with ErrJobEnded, naming its
// state, and nothing is written.
func (c *Core) CancelJob(ctx context.Context, who string, job *imagefarmv1.Job) error {
	if job.GetState().Final() {
		return jobEnded(job.GetId(), job.GetState())
	}
	// Tasks first, so that the job's final event is its last and a watch
	// that ends there misses nothing; no task is placed meanwhile. A task
	// canceled here settles the job CANCELED once none is left open
	// (jobOutcome).
	c.placing.Lock()
	defer c.placing.Unlock()
	tasks, err := c.st.ListTasks(ctx, job.GetId())
	if err != nil {
		return err
	}
	changed := false
	for _, t := range tasks {
		if !t.GetState().Final() && c.cancelTask(ctx, who, t) {
			changed = true
		}
	}
	_, err = c.updateJob(ctx, job.GetId(), func(j *imagefarmv1.Job) error {
		j.State, j.FinishTime = jobCanceled, timestamppb.Now()
		return nil
	})
	var me *MoveError
	switch {
	case errors.As(err, &me) && changed:
		return nil // the last canceled task settled it
	case errors.As(err, &me):
		return jobEnded(job.GetId(), imagefarmv1.JobState(me.From.Number()))
	}
	return err
}

func jobEnded(id string, s imagefarmv1.JobState) error {
	return fmt.Errorf("job %s already %s: nothing to cancel: %w", id, JobStateName(s), ErrJobEnded)
}

// JobStateName is "SUCCEEDED" for JOB_STATE_SUCCEEDED.
func JobStateName(s imagefarmv1.JobState) string {
	return strings.TrimPrefix(s.String(), "JOB_STATE_")
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
			return jobCanceled
		}
		return jobNone
	}
	if IsDeviceJob(job) {
		return deviceOutcome(job, counts.GetDone(), open)
	}
	if so := job.GetTargets().GetStandingOrder(); so != nil {
		if counts.GetDone() >= so.GetCount() {
			return jobSucceeded
		}
		return jobNone
	}
	want := len(job.GetTargets().GetDrives().GetDriveIds())
	switch {
	case len(job.GetTasks()) < want || open > 0:
		return jobNone
	case int(counts.GetDone()) == want:
		return jobSucceeded
	case counts.GetDone() == 0:
		return jobFailed
	}
	return jobPartial
}
