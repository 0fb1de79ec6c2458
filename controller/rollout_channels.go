package controller

import (
	"context"
	"fmt"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// channelMoved asks the rollout loop to look at the models' channels on
// its next round (SetImageChannel calls it).
func (f *fleetServer) channelMoved() {
	f.channelsDue.Store(true)
	f.kick()
}

// followChannels starts a new first article for every model that follows
// a channel that moved: a model whose latest rollout (not aborted) rolled
// out the model's image ref, which now resolves to another digest. An
// open rollout of the old digest is superseded; devices already on it are
// untouched until the new rollout takes them.
func (f *fleetServer) followChannels(ctx context.Context, all []*imagefarmv1.Rollout) error {
	models, err := f.fleet.Models(ctx)
	if err != nil {
		return err
	}
	for _, m := range models {
		latest := latestRollout(all, m.GetName())
		if latest == nil || m.GetImageRef() == "" || latest.GetImageRef() != m.GetImageRef() || latest.GetState() == rAborted {
			continue
		}
		ref, err := parseRef(m.GetImageRef())
		if err != nil {
			continue
		}
		digest, err := f.cat.Resolve(ctx, ref)
		if err != nil || digest == latest.GetManifestDigest() {
			continue
		}
		if err := f.supersede(ctx, m, latest, digest); err != nil && ctx.Err() == nil {
			f.log.Warn("follow channel", "model", m.GetName(), "ref", m.GetImageRef(), "error", err)
		}
	}
	return nil
}

// latestRollout is model's newest rollout (all is newest first).
func latestRollout(all []*imagefarmv1.Rollout, model string) *imagefarmv1.Rollout {
	for _, r := range all {
		if r.GetModel() == model {
			return r
		}
	}
	return nil
}

// supersede ends old (when open) for the channel's new digest and starts
// the model's new rollout with old's policy.
func (f *fleetServer) supersede(ctx context.Context, m *imagefarmv1.Model, old *imagefarmv1.Rollout, digest string) error {
	f.names.Lock()
	defer f.names.Unlock()
	why := fmt.Sprintf("%s moved to %s", m.GetImageRef(), shortDigest(digest))
	if !old.GetState().Final() {
		r, err := f.core.UpdateRollout(ctx, old.GetId(), func(r *imagefarmv1.Rollout) error {
			r.State, r.Reason, r.FinishTime, r.UpdateTime = rSuperseded, why+": a new rollout takes over", now(), now()
			return nil
		})
		if err != nil {
			return err
		}
		f.recordRollout(ctx, controllerActor, r, "superseded: "+why)
		f.endJob(ctx, r, r.GetJobId())
	}
	plan, err := f.planRollout(ctx, m, "", old.GetPolicy())
	if err != nil {
		return err
	}
	_, err = f.startRollout(ctx, plan, controllerActor)
	return err
}
