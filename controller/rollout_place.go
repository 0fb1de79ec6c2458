package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/fleet"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// How the device jobs of rollouts are placed: a rollout's wave is a device
// order whose rollout_id names it. The order takes a device (at PlanBoot
// and at Enroll, like any device order) only while its rollout is in its
// first article or rolling with this job as its current wave, and only a
// device of the rollout's model (its name or an alias) that the rollout
// has not taken and that is not already on its digest, with no more than
// the policy's devices in flight per pool (the device's, an admin's fact).
// And no other job writes the rollout's digest to a device of its model
// before the first article is approved.

// withRollout gives a rollout's wave its rollout and model.
func (c *deviceServer) withRollout(ctx context.Context, dj *deviceJob) error {
	id := dj.job.GetTargets().GetDeviceOrder().GetRolloutId()
	if id == "" {
		return nil
	}
	r, err := c.fleet.Rollout(ctx, id)
	if errors.Is(err, fleet.ErrNotFound) {
		return nil // takes nothing
	}
	if err != nil {
		return err
	}
	dj.roll = r
	if dj.model, err = modelFor(ctx, c.fleet, r.GetModel()); err != nil {
		return err
	}
	dj.inFlight = map[string]int{}
	for _, t := range dj.tasks {
		if t.GetState().Final() {
			continue
		}
		d, err := c.dev.records.Get(ctx, strings.TrimPrefix(t.GetNodeId(), deviceNodePrefix))
		if err != nil && !errors.Is(err, devices.ErrNotFound) {
			return err
		}
		dj.inFlight[d.GetPool()]++
	}
	return nil
}

// rolloutTaking reports whether a rollout's wave takes a device of pool
// now ("" for a device the farm does not know yet, or of no pool).
func (dj deviceJob) rolloutTaking(pool string) bool {
	r := dj.roll
	if r == nil || r.GetJobId() != dj.job.GetId() || (r.GetState() != rFirst && r.GetState() != rRolling) {
		return false
	}
	limit := r.GetPolicy().GetMaxInFlight()
	return limit == 0 || dj.inFlight[pool] < int(limit)
}

// rolloutWants reports whether a rollout's wave takes device d now.
func (dj deviceJob) rolloutWants(d *imagefarmv1.Device) bool {
	return dj.rolloutTaking(d.GetPool()) && rolloutTakes(dj.roll, dj.model, d)
}

// deviceModelRule is modelRule for dj's device: a rollout's wave accepts
// an image tagged with any of its model's names.
func (dj deviceJob) deviceModelRule(models []string, dev *imagefarmv1.Device) error {
	if dj.model != nil && slices.ContainsFunc(modelNames(dj.model), func(n string) bool { return slices.Contains(models, n) }) {
		return nil
	}
	return modelRule(dj.job.GetImageRef(), models, "device "+dev.GetSerial(), dev.GetModel())
}

// firstArticleGuard refuses to write a digest to a device whose model has
// a rollout of that digest not yet approved, unless the job is that
// rollout's: until the approval, only the first article gets it.
func (c *deviceServer) firstArticleGuard(ctx context.Context, dj deviceJob, dev *imagefarmv1.Device) error {
	m, err := modelFor(ctx, c.fleet, dev.GetModel())
	if err != nil || m == nil {
		return err
	}
	all, err := c.fleet.Rollouts(ctx)
	if err != nil {
		return err
	}
	mine := dj.job.GetTargets().GetDeviceOrder().GetRolloutId()
	for _, r := range all {
		if r.GetModel() != m.GetName() || r.GetManifestDigest() != dj.job.GetManifestDigest() || r.GetId() == mine ||
			r.GetState().Final() || r.GetApprovedBy() != "" {
			continue
		}
		return fmt.Errorf("model %q has rollout %s of %s in its first article (%s), not approved: until then only its sample devices get it; "+
			"nothing is written; approve it (imagefarm rollout approve %q) or abort it: %w",
			m.GetName(), r.GetId(), shortDigest(r.GetManifestDigest()), stateName(r.GetState()), m.GetName(), errDeviceRefused)
	}
	return nil
}
