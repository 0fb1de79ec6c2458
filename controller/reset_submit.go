package controller

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Bounds of a reset's extra keep paths.
const (
	maxKeepPaths   = 64
	maxKeepPathLen = 260 // Windows' MAX_PATH
)

// SubmitReset implements ImageFarmService.SubmitReset: a reset (or
// refresh) job for known devices, each refused at submit, nothing stored,
// when its policy does not allow reset, when it is hybrid-joined, or when
// the WIM's (or driver bundle's) models exclude its model. Each refusal is
// audited.
func (a *apiServer) SubmitReset(ctx context.Context, req *imagefarmv1.SubmitResetRequest) (*imagefarmv1.SubmitResetResponse, error) {
	devs, err := a.dev.resetDevices(ctx, req)
	if err != nil {
		return nil, err
	}
	job, err := a.newResetJob(ctx, req, devs)
	if err != nil {
		return nil, err
	}
	if err := a.dev.refuseResets(ctx, job, devs); err != nil {
		return nil, err
	}
	got, err := a.retriedSubmit(ctx, req.GetRequestId(), job)
	if got == nil && err == nil {
		got, err = a.createJob(ctx, req.GetRequestId(), job)
	}
	if err != nil {
		return nil, err
	}
	a.log.Info("reset submitted", "job_id", got.GetId(), "image", got.GetImageRef(), "digest", got.GetManifestDigest(), "devices", len(devs))
	return &imagefarmv1.SubmitResetResponse{Job: got}, nil
}

// resetDevices are the known devices a reset names: by serial, or every
// device of a model or a pool. A reset is for devices the farm knows (it
// needs their records to check their policy), so an unknown serial is
// refused.
func (c *deviceServer) resetDevices(ctx context.Context, req *imagefarmv1.SubmitResetRequest) ([]*imagefarmv1.Device, error) {
	given := 0
	for _, set := range []bool{len(req.GetSerials()) > 0, req.GetModel() != "", req.GetPool() != ""} {
		if set {
			given++
		}
	}
	if given != 1 {
		return nil, fmt.Errorf("targets: name the devices to reset one way: by serial, by --model or by --pool: %w", scheduler.ErrBadTargets)
	}
	if len(req.GetSerials()) > 0 {
		return c.devicesBySerial(ctx, req.GetSerials())
	}
	if req.GetModel() != "" {
		if err := checkModel(req.GetModel()); err != nil {
			return nil, err
		}
	} else if err := ident.Pool(req.GetPool()); err != nil {
		return nil, err
	}
	all, err := c.dev.records.List(ctx)
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(d *imagefarmv1.Device) bool {
		return req.GetModel() != "" && d.GetModel() != req.GetModel() || req.GetPool() != "" && d.GetPool() != req.GetPool()
	})
	switch {
	case len(out) == 0 && req.GetModel() != "":
		return nil, fmt.Errorf("no known device has the model %q (imagefarm devices ls --model): %w", req.GetModel(), scheduler.ErrBadTargets)
	case len(out) == 0:
		return nil, fmt.Errorf("no known device is in the pool %q (imagefarm device set SERIAL --pool): %w", req.GetPool(), scheduler.ErrBadTargets)
	case len(out) > scheduler.MaxCount:
		return nil, fmt.Errorf("%d devices: at most %d in one reset job: %w", len(out), scheduler.MaxCount, scheduler.ErrBadTargets)
	}
	return out, nil
}

// devicesBySerial is the one known device of each serial.
func (c *deviceServer) devicesBySerial(ctx context.Context, serials []string) ([]*imagefarmv1.Device, error) {
	if len(serials) > scheduler.MaxCount {
		return nil, fmt.Errorf("targets: %d devices, want 1 to %d: %w", len(serials), scheduler.MaxCount, scheduler.ErrBadTargets)
	}
	seen := map[string]bool{}
	var out []*imagefarmv1.Device
	for _, s := range serials {
		if err := checkDeviceTarget(&imagefarmv1.DeviceTarget{Serial: s}, seen); err != nil {
			return nil, err
		}
		found, err := c.dev.records.Find(ctx, s)
		if err != nil {
			return nil, err
		}
		found = slices.DeleteFunc(found, func(d *imagefarmv1.Device) bool { return d.GetSerial() != s })
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("no known device has the serial %q: a device is reset once the farm knows it (it netbooted into the farm; imagefarm devices ls): %w",
				s, devices.ErrNotFound)
		case 1:
			out = append(out, found[0])
		default:
			return nil, fmt.Errorf("serial %q: %d devices have it (%s): the firmware reports a placeholder; such devices cannot be targeted by serial: %w",
				s, len(found), deviceIDs(found), errDeviceRefused)
		}
	}
	return out, nil
}

// newResetJob checks a reset's WIM, index, keep paths and driver bundle,
// and turns it into a job record for devs: a device list whose options
// carry the reset, the WIM pinned to its digest.
func (a *apiServer) newResetJob(ctx context.Context, req *imagefarmv1.SubmitResetRequest, devs []*imagefarmv1.Device) (*imagefarmv1.Job, error) {
	spec, err := checkResetSpec(req.GetSpec())
	if err != nil {
		return nil, err
	}
	list := &imagefarmv1.DeviceList{}
	for _, d := range devs {
		list.Devices = append(list.Devices, &imagefarmv1.DeviceTarget{Serial: d.GetSerial()})
	}
	sub := &imagefarmv1.SubmitJobRequest{ImageRef: req.GetImageRef(), Labels: req.GetLabels(), RequestId: req.GetRequestId(),
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: list}},
		Options: &imagefarmv1.JobOptions{AfterWrite: req.GetAfterWrite(), ResetSpec: spec}}
	if err := checkSubmit(sub); err != nil {
		return nil, err
	}
	if w := req.GetAfterWrite(); w != imagefarmv1.AfterWrite_AFTER_WRITE_UNSPECIFIED { // unset: reboot
		if err := checkEnums("after_write", w); err != nil {
			return nil, err
		}
	}
	ref, digest, m, err := a.resolveKind(ctx, req.GetImageRef(), catalog.KindWIM, "image")
	if err != nil {
		return nil, err
	}
	if m.WIM != nil && (m.WIM.TotalParts > 1 || int(spec.GetWimIndex()) > m.WIM.ImageCount) {
		return nil, fmt.Errorf("image %s: index %d of a WIM with %d images in %d parts: want one of its images, of a WIM in one part: %w",
			ref, spec.GetWimIndex(), m.WIM.ImageCount, m.WIM.TotalParts, errBadRequest)
	}
	if spec.GetDriverBundleRef() != "" {
		bref, bdigest, _, err := a.resolveKind(ctx, spec.GetDriverBundleRef(), catalog.KindDrivers, "driver bundle")
		if err != nil {
			return nil, err
		}
		spec.DriverBundleRef, spec.DriverBundleDigest = bref, bdigest
	}
	return &imagefarmv1.Job{Id: core.NewJobID(req.GetRequestId()), ImageRef: ref, ManifestDigest: digest, Targets: sub.GetTargets(),
		Options: sub.GetOptions(), Labels: req.GetLabels(), State: imagefarmv1.JobState_JOB_STATE_PENDING}, nil
}

// resolveKind resolves ref to its digest and manifest, refusing another
// kind than want.
func (a *apiServer) resolveKind(ctx context.Context, s string, want catalog.Kind, what string) (string, string, *catalog.Manifest, error) {
	ref, err := parseRef(s)
	if err != nil {
		return "", "", nil, fmt.Errorf("%s: %w", what, err)
	}
	digest, err := a.cat.Resolve(ctx, ref)
	if err != nil {
		return "", "", nil, err
	}
	m, err := a.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return "", "", nil, err
	}
	if m.Kind != want {
		return "", "", nil, fmt.Errorf("%s %s is a %s, not a %s: push it with --kind %s: %w", what, ref, m.Kind, want, want, errBadRequest)
	}
	return ref.String(), digest, m, nil
}

// checkResetSpec checks a reset's index and keep paths, and returns the
// spec to store: keep paths with forward slashes.
func checkResetSpec(in *imagefarmv1.ResetSpec) (*imagefarmv1.ResetSpec, error) {
	if in.GetWimIndex() < 1 {
		return nil, fmt.Errorf("reset: WIM index %d: want the index of one of the WIM's images, 1 for the first (--index): %w", in.GetWimIndex(), errBadRequest)
	}
	if in.GetRefresh() && len(in.GetKeepPaths()) > 0 {
		return nil, fmt.Errorf("refresh: a refresh keeps nothing; drop --keep, or reset instead: %w", errBadRequest)
	}
	if len(in.GetKeepPaths()) > maxKeepPaths {
		return nil, fmt.Errorf("reset: %d keep paths: at most %d: %w", len(in.GetKeepPaths()), maxKeepPaths, errBadRequest)
	}
	out := &imagefarmv1.ResetSpec{WimIndex: in.GetWimIndex(), Refresh: in.GetRefresh(), DriverBundleRef: in.GetDriverBundleRef()}
	for _, p := range in.GetKeepPaths() {
		clean, err := checkKeepPath(p)
		if err != nil {
			return nil, err
		}
		out.KeepPaths = append(out.KeepPaths, clean)
	}
	return out, nil
}

// checkKeepPath refuses a keep path that is not a relative path inside
// the Windows volume, and gives it with forward slashes.
func checkKeepPath(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("keep path %q: %s: give a path inside the Windows volume from its root, such as ProgramData/Contoso/**: %w",
			cutText(p), why, errBadRequest)
	}
	if err := devices.CheckText("keep path", p); err != nil || p == "" {
		return bad("empty, or not printable text")
	}
	if len(p) > maxKeepPathLen {
		return bad(fmt.Sprintf("%d bytes, at most %d", len(p), maxKeepPathLen))
	}
	s := strings.ReplaceAll(p, `\`, "/")
	if strings.HasPrefix(s, "/") || len(s) > 1 && s[1] == ':' {
		return bad("absolute")
	}
	for _, el := range strings.Split(s, "/") {
		if el == "" || el == "." || el == ".." {
			return bad("it has an empty, . or .. element (it would leave the volume)")
		}
	}
	if _, err := path.Match(s, ""); err != nil {
		return bad("a malformed pattern")
	}
	return s, nil
}

func cutText(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// refuseResets refuses a reset job when any of its devices may not be
// reset: its policy, its hybrid join, the exact-model rule (the WIM's and
// the driver bundle's). Every refusal is audited; nothing is stored.
func (c *deviceServer) refuseResets(ctx context.Context, job *imagefarmv1.Job, devs []*imagefarmv1.Device) error {
	var refused []string
	for _, d := range devs {
		err := c.resetRefusal(ctx, job, d)
		if err == nil {
			continue
		}
		if !isAny(err, errDeviceRefused) {
			return err
		}
		refused = append(refused, message(err))
		c.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_RESET_REFUSED,
			DeviceId: d.GetId(), ImageRef: job.GetImageRef(), ImageDigest: job.GetManifestDigest(), Message: message(err)})
	}
	if len(refused) > 0 {
		return fmt.Errorf("reset refused, nothing submitted: %s: %w", strings.Join(refused, "; "), errDeviceRefused)
	}
	return nil
}

// resetRefusal is why device d may not get the reset of job, nil if it may.
func (c *deviceServer) resetRefusal(ctx context.Context, job *imagefarmv1.Job, d *imagefarmv1.Device) error {
	if _, err := c.resetAllowed(ctx, d); err != nil {
		return err
	}
	m, err := c.cat.ManifestByDigest(ctx, job.GetManifestDigest())
	if err != nil {
		return err
	}
	if err := modelRule(job.GetImageRef(), m.Models, "device "+d.GetSerial(), d.GetModel()); err != nil {
		return err
	}
	spec := job.GetOptions().GetResetSpec()
	if spec.GetDriverBundleDigest() == "" {
		return nil
	}
	b, err := c.cat.ManifestByDigest(ctx, spec.GetDriverBundleDigest())
	if err != nil {
		return err
	}
	return modelRule(spec.GetDriverBundleRef(), b.Models, "device "+d.GetSerial(), d.GetModel())
}
