package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/fleet"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// errRolloutState: a rollout action its rollout's state does not allow
// (approve when not awaiting approval, a second rollout for a model).
// FailedPrecondition.
var errRolloutState = errors.New("controller: rollout state")

// Rollout policy defaults.
const (
	defaultSample        = 1
	defaultWavePercent   = 10
	defaultFailurePct    = 10
	defaultRolloutTick   = 2 * time.Second
	rolloutActorPrefix   = "rollout:"
	autoApprover         = "auto"
	rolloutLabel         = "rollout"
	rolloutWaveLabel     = "rollout-wave"
	channelCheckInterval = 30 * time.Second
)

// fleetServer is the models' and rollouts' API (models.go, rollouts.go)
// and the loop that runs the rollouts (rollout_run.go). Every record
// change goes through the core; the rollouts' devices are written by
// device jobs (device orders) the loop makes, placed like any other.
type fleetServer struct {
	st    *state.Store
	core  *core.Core
	fleet *fleet.Store
	cat   *catalog.Catalog
	view  *storeView
	dev   *deviceServer
	audit auditor
	log   *slog.Logger
	wake  func() // asks the placer to run soon
	// names is held while a model's names are checked and taken, and
	// while a model's open rollouts are checked and one started.
	names sync.Mutex
	// kicks asks the rollout loop to run soon.
	kicks chan struct{}
	// tick is how often the rollout loop runs unasked.
	tick time.Duration
	// channelsDue asks the loop's next round to follow the channels.
	channelsDue atomic.Bool
}

// kick asks the rollout loop to run soon.
func (f *fleetServer) kick() {
	select {
	case f.kicks <- struct{}{}:
	default:
	}
}

// StartRollout implements ImageFarmService.StartRollout: every model is
// checked first, so that a refusal starts none.
func (f *fleetServer) StartRollout(ctx context.Context, req *imagefarmv1.StartRolloutRequest) (*imagefarmv1.StartRolloutResponse, error) {
	if err := checkPolicy(req.GetPolicy()); err != nil {
		return nil, err
	}
	f.names.Lock()
	defer f.names.Unlock()
	models, err := f.startModels(ctx, req)
	if err != nil {
		return nil, err
	}
	var plans []*imagefarmv1.Rollout
	for _, m := range models {
		p, err := f.planRollout(ctx, m, req.GetImageRef(), req.GetPolicy())
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	var out []*imagefarmv1.Rollout
	for _, p := range plans {
		r, err := f.startRollout(ctx, p, actor(ctx))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return &imagefarmv1.StartRolloutResponse{Rollouts: out}, nil
}

// startModels are the models a start request names.
func (f *fleetServer) startModels(ctx context.Context, req *imagefarmv1.StartRolloutRequest) ([]*imagefarmv1.Model, error) {
	switch {
	case req.GetAll() && req.GetModel() != "":
		return nil, fmt.Errorf("give a model or --all, not both: %w", errBadRequest)
	case req.GetModel() != "":
		m, err := f.model(ctx, req.GetModel())
		return []*imagefarmv1.Model{m}, err
	case !req.GetAll():
		return nil, fmt.Errorf("no model: give a model's name or alias, or --all for every model with an image: %w", errBadRequest)
	}
	all, err := f.fleet.Models(ctx)
	all = slices.DeleteFunc(all, func(m *imagefarmv1.Model) bool { return m.GetImageRef() == "" && req.GetImageRef() == "" })
	if err == nil && len(all) == 0 {
		err = fmt.Errorf("--all: no model has an image; set one (imagefarm model set MODEL --image REF) or give --to: %w", errBadRequest)
	}
	return all, err
}

// checkPolicy bounds a rollout policy.
func checkPolicy(p *imagefarmv1.RolloutPolicy) error {
	switch {
	case p.GetSampleSize() > scheduler.MaxCount || p.GetWaveSize() > scheduler.MaxCount || p.GetMaxInFlight() > scheduler.MaxCount:
		return fmt.Errorf("rollout policy: sample, wave size and max in flight are at most %d: %w", scheduler.MaxCount, errBadRequest)
	case p.GetWavePercent() > 100 || p.GetFailureThresholdPercent() > 100:
		return fmt.Errorf("rollout policy: wave and failure percentages are at most 100: %w", errBadRequest)
	case p.GetWaveSize() > 0 && p.GetWavePercent() > 0:
		return fmt.Errorf("rollout policy: give a wave size or a wave percentage, not both: %w", errBadRequest)
	}
	return nil
}

// withDefaults is p with its defaults filled in.
func withDefaults(p *imagefarmv1.RolloutPolicy) *imagefarmv1.RolloutPolicy {
	out := &imagefarmv1.RolloutPolicy{SampleSize: cmp.Or(p.GetSampleSize(), defaultSample), WaveSize: p.GetWaveSize(),
		WavePercent: p.GetWavePercent(), MaxInFlight: p.GetMaxInFlight(),
		FailureThresholdPercent: cmp.Or(p.GetFailureThresholdPercent(), defaultFailurePct), AutoApprove: p.GetAutoApprove()}
	if out.WaveSize == 0 && out.WavePercent == 0 {
		out.WavePercent = defaultWavePercent
	}
	return out
}

// planRollout checks that m may get a rollout of ref (the model's image
// when empty) and returns the rollout to start.
func (f *fleetServer) planRollout(ctx context.Context, m *imagefarmv1.Model, ref string, p *imagefarmv1.RolloutPolicy) (*imagefarmv1.Rollout, error) {
	ref = cmp.Or(ref, m.GetImageRef())
	if ref == "" {
		return nil, fmt.Errorf("model %q has no image: give one (imagefarm rollout start %q --to REF) or set it (imagefarm model set %q --image REF): %w",
			m.GetName(), m.GetName(), m.GetName(), errBadRequest)
	}
	open, err := f.openRollout(ctx, m.GetName())
	if err != nil {
		return nil, err
	}
	if open != nil {
		return nil, fmt.Errorf("model %q has rollout %s open (%s): one rollout per model at a time; abort it (imagefarm rollout abort %q) first: %w",
			m.GetName(), open.GetId(), stateName(open.GetState()), m.GetName(), errRolloutState)
	}
	parsed, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	digest, err := f.cat.Resolve(ctx, parsed)
	if err != nil {
		return nil, err
	}
	if err := f.view.checkDriveImage(ctx, digest); err != nil {
		return nil, err
	}
	man, err := f.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return nil, err
	}
	if len(man.Models) > 0 && !slices.ContainsFunc(modelNames(m), func(n string) bool { return slices.Contains(man.Models, n) }) {
		return nil, fmt.Errorf("%s is for the models %s only, not model %q: the exact-model rule refuses it; give an image for %q or a universal one: %w",
			ref, quoteAll(man.Models), m.GetName(), m.GetName(), errDeviceRefused)
	}
	pol := withDefaults(p)
	return &imagefarmv1.Rollout{Model: m.GetName(), ImageRef: parsed.String(), ManifestDigest: digest, DriverBundleRef: m.GetDriverBundleRef(),
		Policy: pol, WaveCount: pol.GetSampleSize()}, nil
}

// startRollout stores plan as a new rollout in its first article, makes
// its first job and records who started it.
func (f *fleetServer) startRollout(ctx context.Context, plan *imagefarmv1.Rollout, who string) (*imagefarmv1.Rollout, error) {
	id := core.NewRolloutID()
	r, err := f.core.UpdateRollout(ctx, id, func(r *imagefarmv1.Rollout) error {
		r.Model, r.ImageRef, r.ManifestDigest, r.DriverBundleRef = plan.GetModel(), plan.GetImageRef(), plan.GetManifestDigest(), plan.GetDriverBundleRef()
		r.Policy, r.WaveCount, r.Wave, r.JobId = plan.GetPolicy(), plan.GetWaveCount(), 0, waveJobID(id, 0)
		r.State, r.StartedBy, r.CreateTime, r.UpdateTime = imagefarmv1.RolloutState_ROLLOUT_STATE_FIRST_ARTICLE, who, now(), now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.recordRollout(ctx, who, r, fmt.Sprintf("started: first article on %d device(s) of %q with %s", r.GetWaveCount(), r.GetModel(), r.GetImageRef()))
	if err := f.ensureJob(ctx, r); err != nil {
		f.log.Warn("rollout job not made yet: the rollout loop retries", "rollout_id", r.GetId(), "error", err)
	}
	f.kick()
	return r, nil
}

// waveJobID is the id of a rollout's wave's job: the same every time, so
// that the loop can make it again after a restart and find it made.
func waveJobID(rolloutID string, wave uint32) string {
	return core.NewJobID(fmt.Sprintf("rollout/%s/wave/%d", rolloutID, wave))
}

// ensureJob makes the job of r's current wave when it is not there: a
// device order for the model, which only r's devices satisfy (wants).
func (f *fleetServer) ensureJob(ctx context.Context, r *imagefarmv1.Rollout) error {
	if r.GetJobId() == "" || r.GetWaveCount() == 0 {
		return nil
	}
	_, err := f.st.GetJob(ctx, r.GetJobId())
	if !errors.Is(err, state.ErrNotFound) {
		return err
	}
	job := &imagefarmv1.Job{Id: r.GetJobId(), ImageRef: r.GetImageRef(), ManifestDigest: r.GetManifestDigest(),
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{
			Model: r.GetModel(), Count: r.GetWaveCount(), RolloutId: r.GetId()}}},
		Options:     &imagefarmv1.JobOptions{DriverBundleRef: r.GetDriverBundleRef()},
		Labels:      map[string]string{rolloutLabel: r.GetId(), rolloutWaveLabel: fmt.Sprint(r.GetWave())},
		SubmittedBy: rolloutActorPrefix + r.GetId(), State: imagefarmv1.JobState_JOB_STATE_PENDING}
	created, err := f.core.CreateJob(ctx, job)
	if errors.Is(err, state.ErrExists) {
		return nil
	}
	if created != nil {
		f.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: rolloutActorPrefix + r.GetId(), Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT,
			JobId: created.GetId(), ImageRef: created.GetImageRef(), ImageDigest: created.GetManifestDigest(), Model: r.GetModel(),
			RolloutId: r.GetId(), Message: targetsText(created.GetTargets())})
		f.wake()
	}
	return err
}

// openRollout is model's open rollout, nil if none.
func (f *fleetServer) openRollout(ctx context.Context, model string) (*imagefarmv1.Rollout, error) {
	all, err := f.fleet.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range all {
		if r.GetModel() == model && !r.GetState().Final() {
			return r, nil
		}
	}
	return nil, nil
}

// ListRollouts implements ImageFarmService.ListRollouts.
func (f *fleetServer) ListRollouts(ctx context.Context, req *imagefarmv1.ListRolloutsRequest) (*imagefarmv1.ListRolloutsResponse, error) {
	name := ""
	if req.GetModel() != "" {
		m, err := f.model(ctx, req.GetModel())
		if err != nil {
			return nil, err
		}
		name = m.GetName()
	}
	all, err := f.fleet.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	all = slices.DeleteFunc(all, func(r *imagefarmv1.Rollout) bool {
		return name != "" && r.GetModel() != name || !req.GetAll() && r.GetState().Final()
	})
	return &imagefarmv1.ListRolloutsResponse{Rollouts: all}, nil
}

// stateName is a rollout state as the CLI shows it ("awaiting-approval").
func stateName(s imagefarmv1.RolloutState) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "ROLLOUT_STATE_")), "_", "-")
}

// recordRollout records what happened to a rollout.
func (f *fleetServer) recordRollout(ctx context.Context, who string, r *imagefarmv1.Rollout, what string) {
	f.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: who, Action: imagefarmv1.AuditAction_AUDIT_ACTION_ROLLOUT, RolloutId: r.GetId(),
		Model: r.GetModel(), ImageRef: r.GetImageRef(), ImageDigest: r.GetManifestDigest(), JobId: r.GetJobId(),
		Message: fmt.Sprintf("%s (now %s)", what, stateName(r.GetState()))})
	f.log.Info("rollout", "rollout_id", r.GetId(), "model", r.GetModel(), "state", r.GetState(), "what", what)
}
