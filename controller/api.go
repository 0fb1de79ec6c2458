package controller

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// ListImages implements ImageFarmService.ListImages.
func (c *Controller) ListImages(ctx context.Context, req *imagefarmv1.ListImagesRequest) (*imagefarmv1.ListImagesResponse, error) {
	return c.img.ListImages(ctx, req)
}

// GetImage implements ImageFarmService.GetImage.
func (c *Controller) GetImage(ctx context.Context, req *imagefarmv1.GetImageRequest) (*imagefarmv1.GetImageResponse, error) {
	return c.img.GetImage(ctx, req)
}

// SubmitJob implements ImageFarmService.SubmitJob: the ref is resolved to a
// digest now, and what can never be placed is refused now. A submit with
// the request id of an earlier one gets that job back when it asks for the
// same, and is refused when it asks for something else.
func (c *Controller) SubmitJob(ctx context.Context, req *imagefarmv1.SubmitJobRequest) (*imagefarmv1.SubmitJobResponse, error) {
	job, err := c.newJob(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	got, err := c.retriedSubmit(ctx, req.GetRequestId(), job)
	if got == nil && err == nil {
		got, err = c.createJob(ctx, req.GetRequestId(), job)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	c.log.Info("job submitted", "job_id", got.GetId(), "image", got.GetImageRef(), "digest", got.GetManifestDigest())
	return &imagefarmv1.SubmitJobResponse{Job: got}, nil
}

// createJob stores job once it is known that it can be placed, and
// returns it as stored.
func (c *Controller) createJob(ctx context.Context, requestID string, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	sj, err := c.schedJob(ctx, job)
	if err != nil {
		return nil, err
	}
	farm, _, err := c.farmSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	if err := scheduler.ValidateSubmit(sj, farm); err != nil {
		return nil, err
	}
	created, err := c.st.CreateJob(ctx, job)
	if created != nil { // stored, even if its event is pending
		c.recordSubmit(ctx, created)
	}
	if errors.Is(err, state.ErrExists) { // a submit with the same request id got there first
		if prior, perr := c.retriedSubmit(ctx, requestID, job); prior != nil || perr != nil {
			return prior, perr
		}
	}
	if err != nil {
		return nil, err
	}
	c.wake()
	return c.st.GetJob(ctx, job.GetId())
}

// errRequestIDReused: a request id is sent again with another request.
// AlreadyExists.
var errRequestIDReused = errors.New("controller: request id already used")

// retriedSubmit returns the job that an earlier submit with requestID made,
// when job (made from a submit with requestID) asks for the same image,
// targets, options and labels, or refuses job when it asks for anything
// else. Without an earlier submit it returns nil.
func (c *Controller) retriedSubmit(ctx context.Context, requestID string, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	if requestID == "" {
		return nil, nil
	}
	prior, err := c.st.GetJob(ctx, job.GetId())
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if prior.GetImageRef() != job.GetImageRef() || !proto.Equal(prior.GetTargets(), job.GetTargets()) ||
		!proto.Equal(prior.GetOptions(), job.GetOptions()) || !maps.Equal(prior.GetLabels(), job.GetLabels()) {
		return nil, fmt.Errorf("request id %q was used for job %s (%s to %s): give another request a new request id: %w",
			requestID, prior.GetId(), prior.GetImageRef(), targetsText(prior.GetTargets()), errRequestIDReused)
	}
	return prior, nil
}

// newJob checks a submit request and turns it into a job record.
func (c *Controller) newJob(ctx context.Context, req *imagefarmv1.SubmitJobRequest) (*imagefarmv1.Job, error) {
	if err := checkSubmit(req); err != nil {
		return nil, err
	}
	ref, err := parseRef(req.GetImageRef())
	if err != nil {
		return nil, err
	}
	digest, err := c.cfg.Catalog.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := c.checkDriveImage(ctx, digest); err != nil {
		return nil, err
	}
	id := newID("j")
	if r := req.GetRequestId(); r != "" {
		sum := sha256.Sum256([]byte(r))
		id = "j" + hex.EncodeToString(sum[:12]) // the same request id makes the same job
	}
	return &imagefarmv1.Job{Id: id, ImageRef: ref.String(), ManifestDigest: digest, Targets: req.GetTargets(),
		Options: req.GetOptions(), Labels: req.GetLabels(), State: imagefarmv1.JobState_JOB_STATE_PENDING}, nil
}

// GetJob implements ImageFarmService.GetJob.
func (c *Controller) GetJob(ctx context.Context, req *imagefarmv1.GetJobRequest) (*imagefarmv1.GetJobResponse, error) {
	job, err := c.job(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	c.withProgress(job.GetTasks())
	return &imagefarmv1.GetJobResponse{Job: job}, nil
}

func (c *Controller) job(ctx context.Context, id string) (*imagefarmv1.Job, error) {
	job, err := c.st.GetJob(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		err = fmt.Errorf("no job %q: list jobs with `imagefarm job ls`: %w", id, errNoJob)
	}
	return job, toStatus(err)
}

// withProgress fills running tasks with their live progress.
func (c *Controller) withProgress(tasks []*imagefarmv1.Task) {
	c.farm.mu.Lock()
	defer c.farm.mu.Unlock()
	for _, t := range tasks {
		if p := c.farm.progress[t.GetId()]; p != nil && !t.GetState().Final() {
			t.BytesDone, t.BytesTotal, t.BytesPerSecond = p.GetBytesDone(), p.GetBytesTotal(), p.GetBytesPerSecond()
		}
	}
}

// ListJobs implements ImageFarmService.ListJobs.
func (c *Controller) ListJobs(ctx context.Context, req *imagefarmv1.ListJobsRequest) (*imagefarmv1.ListJobsResponse, error) {
	if err := cmp.Or(checkEnums("states", req.GetStates()...), checkPageSize(req.GetPageSize()),
		checkImageFilter(req.GetImage())); err != nil {
		return nil, toStatus(err)
	}
	jobs, next, err := c.st.ListJobs(ctx, state.JobFilter{States: req.GetStates(), Image: req.GetImage(),
		NodeID: req.GetNodeId(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.countTasks(ctx, jobs); err != nil {
		return nil, toStatus(err)
	}
	return &imagefarmv1.ListJobsResponse{Jobs: jobs, NextPageToken: next}, nil
}

// countTasks fills the task counts of listed jobs from their tasks.
func (c *Controller) countTasks(ctx context.Context, jobs []*imagefarmv1.Job) error {
	tasks, err := c.st.ListTasks(ctx, "")
	if err != nil {
		return err
	}
	byJob := map[string][]*imagefarmv1.Task{}
	for _, t := range tasks {
		byJob[t.GetJobId()] = append(byJob[t.GetJobId()], t)
	}
	for _, j := range jobs {
		j.TaskCounts = state.CountTasks(byJob[j.GetId()])
	}
	return nil
}

// CancelJob implements ImageFarmService.CancelJob: unfinished tasks end
// CANCELED and their imagers are told to stop, over NATS and, when
// connected, over their status stream too. A job that had already ended
// is refused, with its state, and nothing is recorded.
func (c *Controller) CancelJob(ctx context.Context, req *imagefarmv1.CancelJobRequest) (*imagefarmv1.CancelJobResponse, error) {
	job, err := c.job(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	ended, err := c.cancelJob(ctx, job)
	if err != nil {
		return nil, toStatus(err)
	}
	if ended != imagefarmv1.JobState_JOB_STATE_UNSPECIFIED {
		return nil, toStatus(fmt.Errorf("job %s already %s: nothing to cancel: %w", job.GetId(), jobStateName(ended), errJobEnded))
	}
	c.record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_CANCEL,
		JobId: job.GetId(), ImageRef: job.GetImageRef(), ImageDigest: job.GetManifestDigest(),
		Message: "the job was " + jobStateName(job.GetState())})
	job, err = c.job(ctx, job.GetId())
	return &imagefarmv1.CancelJobResponse{Job: job}, err
}

// errJobEnded: a job that had ended is canceled. FailedPrecondition.
var errJobEnded = errors.New("controller: job already ended")

// cancelJob cancels job's open tasks, then the job. When it changed
// nothing (the job had ended, by itself or by another cancel), it returns
// the state the job had ended in.
func (c *Controller) cancelJob(ctx context.Context, job *imagefarmv1.Job) (imagefarmv1.JobState, error) {
	if job.GetState().Final() {
		return job.GetState(), nil
	}
	// Tasks first, so that the job's final event is its last and a watch
	// that ends there misses nothing; no task is placed meanwhile. A task
	// canceled here settles the job CANCELED once none is left open
	// (jobOutcome).
	c.placing.Lock()
	defer c.placing.Unlock()
	tasks, err := c.st.ListTasks(ctx, job.GetId())
	if err != nil {
		return 0, err
	}
	changed := false
	for _, t := range tasks {
		if !t.GetState().Final() && c.cancelTask(ctx, actor(ctx), t) {
			changed = true
		}
	}
	var ended imagefarmv1.JobState
	_, err = c.st.UpdateJob(ctx, job.GetId(), func(j *imagefarmv1.Job) error {
		ended = imagefarmv1.JobState_JOB_STATE_UNSPECIFIED
		if j.State.Final() {
			ended = j.State
		} else {
			j.State, j.FinishTime = imagefarmv1.JobState_JOB_STATE_CANCELED, now()
		}
		return nil
	})
	if err != nil || changed {
		return 0, err
	}
	return ended, nil
}

// jobStateName is "SUCCEEDED" for JOB_STATE_SUCCEEDED.
func jobStateName(s imagefarmv1.JobState) string {
	return strings.TrimPrefix(s.String(), "JOB_STATE_")
}

// cancelTask ends t CANCELED on behalf of who, and stops it on its node.
// It reports whether it ended the task (false: the task had ended).
func (c *Controller) cancelTask(ctx context.Context, who string, t *imagefarmv1.Task) bool {
	ended := false
	canceled, err := c.st.UpdateTask(ctx, t.GetJobId(), t.GetId(), func(t *imagefarmv1.Task) error {
		if ended = !t.State.Final(); ended {
			t.State, t.FinishTime = imagefarmv1.TaskState_TASK_STATE_CANCELED, now()
		}
		return nil
	})
	if ended && canceled != nil {
		c.recordTaskEnd(ctx, who, canceled)
	}
	if err != nil {
		c.log.Warn("cancel task", "task_id", t.GetId(), "error", err)
	}
	c.release(ctx, t.GetNodeId(), t.GetDrive().GetId(), t.GetId())
	if _, err := c.pub.Cancel(ctx, t.GetNodeId(), &imagefarmv1.TaskCancel{TaskId: t.GetId(), JobId: t.GetJobId(),
		Epoch: t.GetEpoch(), Reason: imagefarmv1.StopReason_STOP_REASON_CANCELED}); err != nil {
		c.log.Warn("publish cancel", "task_id", t.GetId(), "error", err)
	}
	c.farm.mu.Lock()
	s := c.farm.sessions[t.GetNodeId()]
	c.farm.mu.Unlock()
	if s != nil {
		s.stop(t.GetId(), t.GetEpoch(), imagefarmv1.StopReason_STOP_REASON_CANCELED, "job canceled")
	}
	return ended && err == nil
}
