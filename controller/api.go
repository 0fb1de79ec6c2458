package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// apiServer is the client API, ImageFarmService: an adapter that checks
// each request, reads the store or calls the core (which makes every job,
// task and drive change), and returns domain errors, which statusUnary and
// statusStream turn into gRPC codes.
type apiServer struct {
	imagefarmv1.UnimplementedImageFarmServiceServer
	img     images
	cat     *catalog.Catalog
	trusted *catalog.KeyRing // nil: any key whose signature verifies
	st      *state.Store
	core    *core.Core
	view    *storeView
	live    *farmView
	audit   auditor
	tokens  *tokens.Store
	refs    *catalogrefs.Store
	log     *slog.Logger
	wake    func() // asks the placer to run soon
	dev     *deviceServer
	fleet   *fleetServer
}

// ListImages implements ImageFarmService.ListImages.
func (a *apiServer) ListImages(ctx context.Context, req *imagefarmv1.ListImagesRequest) (*imagefarmv1.ListImagesResponse, error) {
	return a.img.ListImages(ctx, req)
}

// GetImage implements ImageFarmService.GetImage.
func (a *apiServer) GetImage(ctx context.Context, req *imagefarmv1.GetImageRequest) (*imagefarmv1.GetImageResponse, error) {
	return a.img.GetImage(ctx, req)
}

// SubmitJob implements ImageFarmService.SubmitJob: the ref is resolved to a
// digest now, and what can never be placed is refused now. A submit with
// the request id of an earlier one gets that job back when it asks for the
// same, and is refused when it asks for something else.
func (a *apiServer) SubmitJob(ctx context.Context, req *imagefarmv1.SubmitJobRequest) (*imagefarmv1.SubmitJobResponse, error) {
	if req.GetOptions().GetResetSpec() != nil {
		return nil, fmt.Errorf("options.reset_spec: a reset is submitted with SubmitReset (imagefarm device reset), "+
			"which checks each device's reset policy: %w", errBadRequest)
	}
	job, err := a.newJob(ctx, req)
	if err != nil {
		return nil, err
	}
	got, err := a.retriedSubmit(ctx, req.GetRequestId(), job)
	if got == nil && err == nil {
		got, err = a.createJob(ctx, req.GetRequestId(), job)
	}
	if err != nil {
		return nil, err
	}
	a.log.Info("job submitted", "job_id", got.GetId(), "image", got.GetImageRef(), "digest", got.GetManifestDigest())
	return &imagefarmv1.SubmitJobResponse{Job: got}, nil
}

// createJob stores job once it is known that it can be placed, and
// returns it as stored.
func (a *apiServer) createJob(ctx context.Context, requestID string, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	if err := a.checkPlaceable(ctx, job); err != nil {
		return nil, err
	}
	created, err := a.core.CreateJob(ctx, job)
	if created != nil { // stored, even if its event is pending
		a.recordSubmit(ctx, created)
	}
	if errors.Is(err, state.ErrExists) { // a submit with the same request id got there first
		if prior, perr := a.retriedSubmit(ctx, requestID, job); prior != nil || perr != nil {
			return prior, perr
		}
	}
	if err != nil {
		return nil, err
	}
	a.wake()
	return a.st.GetJob(ctx, job.GetId())
}

// checkPlaceable refuses a job that can never be placed.
func (a *apiServer) checkPlaceable(ctx context.Context, job *imagefarmv1.Job) error {
	if isDeviceJob(job) {
		return a.dev.checkDeviceJob(ctx, job)
	}
	sj, err := a.view.schedJob(ctx, job)
	if err != nil {
		return err
	}
	farm, _, err := a.view.farmSnapshot(ctx)
	if err != nil {
		return err
	}
	return scheduler.ValidateSubmit(sj, farm)
}

// errRequestIDReused: a request id is sent again with another request.
// AlreadyExists.
var errRequestIDReused = errors.New("controller: request id already used")

// retriedSubmit returns the job that an earlier submit with requestID made,
// when job (made from a submit with requestID) asks for the same image,
// targets, options and labels, or refuses job when it asks for anything
// else. Without an earlier submit it returns nil.
func (a *apiServer) retriedSubmit(ctx context.Context, requestID string, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	if requestID == "" {
		return nil, nil
	}
	prior, err := a.st.GetJob(ctx, job.GetId())
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
func (a *apiServer) newJob(ctx context.Context, req *imagefarmv1.SubmitJobRequest) (*imagefarmv1.Job, error) {
	if err := checkSubmit(req); err != nil {
		return nil, err
	}
	ref, err := parseRef(req.GetImageRef())
	if err != nil {
		return nil, err
	}
	digest, err := a.cat.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := a.view.checkDriveImage(ctx, digest); err != nil {
		return nil, err
	}
	if err := a.view.checkPartitions(ctx, digest, req.GetOptions()); err != nil {
		return nil, err
	}
	return &imagefarmv1.Job{Id: core.NewJobID(req.GetRequestId()), ImageRef: ref.String(), ManifestDigest: digest, Targets: req.GetTargets(),
		Options: req.GetOptions(), Labels: req.GetLabels(), State: imagefarmv1.JobState_JOB_STATE_PENDING}, nil
}

// GetJob implements ImageFarmService.GetJob.
func (a *apiServer) GetJob(ctx context.Context, req *imagefarmv1.GetJobRequest) (*imagefarmv1.GetJobResponse, error) {
	job, err := a.job(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	a.live.fillProgress(job.GetTasks())
	return &imagefarmv1.GetJobResponse{Job: job}, nil
}

func (a *apiServer) job(ctx context.Context, id string) (*imagefarmv1.Job, error) {
	job, err := a.st.GetJob(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		err = fmt.Errorf("no job %q: list jobs with `imagefarm job ls`: %w", id, errNoJob)
	}
	return job, err
}

// ListJobs implements ImageFarmService.ListJobs.
func (a *apiServer) ListJobs(ctx context.Context, req *imagefarmv1.ListJobsRequest) (*imagefarmv1.ListJobsResponse, error) {
	if err := cmp.Or(checkEnums("states", req.GetStates()...), checkImageFilter(req.GetImage())); err != nil {
		return nil, err
	}
	jobs, next, err := a.st.ListJobs(ctx, state.JobFilter{States: req.GetStates(), Image: req.GetImage(),
		NodeID: req.GetNodeId(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	if err := a.countTasks(ctx, jobs); err != nil {
		return nil, err
	}
	return &imagefarmv1.ListJobsResponse{Jobs: jobs, NextPageToken: next}, nil
}

// countTasks fills the task counts of listed jobs from their tasks.
func (a *apiServer) countTasks(ctx context.Context, jobs []*imagefarmv1.Job) error {
	tasks, err := a.st.ListTasks(ctx, "")
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
func (a *apiServer) CancelJob(ctx context.Context, req *imagefarmv1.CancelJobRequest) (*imagefarmv1.CancelJobResponse, error) {
	job, err := a.job(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	if err := a.core.CancelJob(ctx, actor(ctx), job); err != nil {
		return nil, err
	}
	a.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_CANCEL,
		JobId: job.GetId(), ImageRef: job.GetImageRef(), ImageDigest: job.GetManifestDigest(),
		Message: "the job was " + core.JobStateName(job.GetState())})
	job, err = a.job(ctx, job.GetId())
	return &imagefarmv1.CancelJobResponse{Job: job}, err
}
