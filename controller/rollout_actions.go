package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/imagefarm/imagefarm/controller/core"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Rollout states, short.
const (
	rFirst      = imagefarmv1.RolloutState_ROLLOUT_STATE_FIRST_ARTICLE
	rAwaiting   = imagefarmv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL
	rRolling    = imagefarmv1.RolloutState_ROLLOUT_STATE_ROLLING
	rPaused     = imagefarmv1.RolloutState_ROLLOUT_STATE_PAUSED
	rBlocked    = imagefarmv1.RolloutState_ROLLOUT_STATE_BLOCKED
	rDone       = imagefarmv1.RolloutState_ROLLOUT_STATE_DONE
	rAborted    = imagefarmv1.RolloutState_ROLLOUT_STATE_ABORTED
	rSuperseded = imagefarmv1.RolloutState_ROLLOUT_STATE_SUPERSEDED
)

// rolloutAction is one operator action on a model's open rollout: the
// states it applies in, what it does to the record, and what it says.
type rolloutAction struct {
	verb   string
	from   []imagefarmv1.RolloutState
	change func(r *imagefarmv1.Rollout, who, why string)
}

var (
	approveAction = rolloutAction{verb: "approved", from: []imagefarmv1.RolloutState{rAwaiting},
		change: func(r *imagefarmv1.Rollout, who, _ string) {
			r.State, r.ApprovedBy, r.ApproveTime = rRolling, who, now()
			r.JobId, r.WaveCount = "", 0 // the loop starts wave 1
		}}
	pauseAction = rolloutAction{verb: "paused", from: []imagefarmv1.RolloutState{rFirst, rRolling},
		change: func(r *imagefarmv1.Rollout, who, why string) {
			r.State, r.Reason = rPaused, fmt.Sprintf("paused by %s: %s", who, orNone(why))
		}}
	resumeAction = rolloutAction{verb: "resumed", from: []imagefarmv1.RolloutState{rPaused},
		change: func(r *imagefarmv1.Rollout, _, _ string) {
			r.State, r.Reason = rFirst, ""
			if r.GetApprovedBy() != "" {
				r.State = rRolling
				r.JobId, r.WaveCount = "", 0 // the paused wave's job ends; the loop starts the next
			}
		}}
	abortAction = rolloutAction{verb: "aborted", from: []imagefarmv1.RolloutState{rFirst, rAwaiting, rRolling, rPaused, rBlocked},
		change: func(r *imagefarmv1.Rollout, who, why string) {
			r.State, r.Reason, r.FinishTime = rAborted, fmt.Sprintf("aborted by %s: %s", who, orNone(why)), now()
		}}
)

func orNone(why string) string {
	if why == "" {
		return "no reason given"
	}
	return why
}

// act applies a to model's open rollout; a rollout in a state a does not
// apply in is refused naming its state, and nothing changes.
func (f *fleetServer) act(ctx context.Context, a rolloutAction, model, why string) (*imagefarmv1.Rollout, error) {
	if len(why) > 512 {
		return nil, fmt.Errorf("reason: %d bytes, at most 512: %w", len(why), errBadRequest)
	}
	m, err := f.model(ctx, model)
	if err != nil {
		return nil, err
	}
	open, err := f.openRollout(ctx, m.GetName())
	if err != nil {
		return nil, err
	}
	if open == nil {
		return nil, fmt.Errorf("model %q has no open rollout: start one with imagefarm rollout start %q: %w", m.GetName(), m.GetName(), errRolloutState)
	}
	who := actor(ctx)
	oldJob := open.GetJobId()
	r, err := f.core.UpdateRollout(ctx, open.GetId(), func(r *imagefarmv1.Rollout) error {
		if !slices.Contains(a.from, r.GetState()) {
			return fmt.Errorf("rollout %s of model %q is %s; it can be %s only when %s (imagefarm rollout status %q): %w",
				r.GetId(), r.GetModel(), stateName(r.GetState()), a.verb, statesText(a.from), r.GetModel(), errRolloutState)
		}
		a.change(r, who, why)
		r.UpdateTime = now()
		return nil
	})
	if errors.Is(err, core.ErrIllegalMove) {
		err = fmt.Errorf("rollout %s: %w: %w", open.GetId(), err, errRolloutState)
	}
	if err != nil {
		return nil, err
	}
	f.recordRollout(ctx, who, r, a.verb+": "+orNone(why))
	if oldJob != "" && oldJob != r.GetJobId() || r.GetState().Final() {
		f.endJob(ctx, r, oldJob)
	}
	f.kick()
	f.wake()
	return r, nil
}

// statesText names states for a person.
func statesText(ss []imagefarmv1.RolloutState) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += " or "
		}
		out += stateName(s)
	}
	return out
}

// endJob cancels a rollout's job that no longer takes devices, if open.
func (f *fleetServer) endJob(ctx context.Context, r *imagefarmv1.Rollout, jobID string) {
	if jobID == "" {
		return
	}
	job, err := f.st.GetJob(ctx, jobID)
	if err == nil && !job.GetState().Final() {
		err = f.core.CancelJob(ctx, rolloutActorPrefix+r.GetId(), job)
	}
	if err != nil && !errors.Is(err, core.ErrJobEnded) {
		f.log.Warn("end rollout job", "rollout_id", r.GetId(), "job_id", jobID, "error", err)
	}
}

// ApproveRollout implements ImageFarmService.ApproveRollout.
func (f *fleetServer) ApproveRollout(ctx context.Context, req *imagefarmv1.ApproveRolloutRequest) (*imagefarmv1.ApproveRolloutResponse, error) {
	r, err := f.act(ctx, approveAction, req.GetModel(), req.GetReason())
	return &imagefarmv1.ApproveRolloutResponse{Rollout: r}, err
}

// PauseRollout implements ImageFarmService.PauseRollout.
func (f *fleetServer) PauseRollout(ctx context.Context, req *imagefarmv1.PauseRolloutRequest) (*imagefarmv1.PauseRolloutResponse, error) {
	r, err := f.act(ctx, pauseAction, req.GetModel(), req.GetReason())
	return &imagefarmv1.PauseRolloutResponse{Rollout: r}, err
}

// ResumeRollout implements ImageFarmService.ResumeRollout.
func (f *fleetServer) ResumeRollout(ctx context.Context, req *imagefarmv1.ResumeRolloutRequest) (*imagefarmv1.ResumeRolloutResponse, error) {
	r, err := f.act(ctx, resumeAction, req.GetModel(), req.GetReason())
	return &imagefarmv1.ResumeRolloutResponse{Rollout: r}, err
}

// AbortRollout implements ImageFarmService.AbortRollout.
func (f *fleetServer) AbortRollout(ctx context.Context, req *imagefarmv1.AbortRolloutRequest) (*imagefarmv1.AbortRolloutResponse, error) {
	r, err := f.act(ctx, abortAction, req.GetModel(), req.GetReason())
	return &imagefarmv1.AbortRolloutResponse{Rollout: r}, err
}
