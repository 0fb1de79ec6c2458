package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/fleet"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// errNameTaken: a model name or alias another model has. AlreadyExists.
var errNameTaken = errors.New("controller: model name taken")

// maxModelRefs bounds each list of refs a model names.
const maxModelRefs = 64

// modelFields are what UpdateModel may change.
var modelFields = []string{"vendor", "aliases", "image_ref", "driver_bundle_ref", "provisioning_refs", "update_refs", "hook_refs"}

// AddModel implements ImageFarmService.AddModel.
func (f *fleetServer) AddModel(ctx context.Context, req *imagefarmv1.AddModelRequest) (*imagefarmv1.AddModelResponse, error) {
	m := req.GetModel()
	if err := checkModelRecord(m); err != nil {
		return nil, err
	}
	f.names.Lock() // names are checked, then taken
	defer f.names.Unlock()
	if err := f.checkNamesFree(ctx, m.GetName(), m); err != nil {
		return nil, err
	}
	stored, err := f.core.UpdateModel(ctx, m.GetName(), func(r *imagefarmv1.Model) error {
		if r.GetState() != imagefarmv1.ModelState_MODEL_STATE_UNSPECIFIED {
			return fmt.Errorf("model %q exists: change it with imagefarm model set: %w", m.GetName(), errNameTaken)
		}
		r.Vendor, r.Aliases, r.ImageRef, r.DriverBundleRef = m.GetVendor(), m.GetAliases(), m.GetImageRef(), m.GetDriverBundleRef()
		r.ProvisioningRefs, r.UpdateRefs, r.HookRefs = m.GetProvisioningRefs(), m.GetUpdateRefs(), m.GetHookRefs()
		r.State, r.CreatedBy, r.CreateTime, r.UpdateTime = imagefarmv1.ModelState_MODEL_STATE_ACTIVE, actor(ctx), now(), now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.recordModel(ctx, stored, "added: "+modelText(stored))
	return &imagefarmv1.AddModelResponse{Model: stored}, nil
}

// UpdateModel implements ImageFarmService.UpdateModel.
func (f *fleetServer) UpdateModel(ctx context.Context, req *imagefarmv1.UpdateModelRequest) (*imagefarmv1.UpdateModelResponse, error) {
	if len(req.GetFields()) == 0 {
		return nil, fmt.Errorf("no fields to change: name some of %s: %w", strings.Join(modelFields, ", "), errBadRequest)
	}
	for _, fl := range req.GetFields() {
		if !slices.Contains(modelFields, fl) {
			return nil, fmt.Errorf("field %q: a model's changeable fields are %s: %w", fl, strings.Join(modelFields, ", "), errBadRequest)
		}
	}
	f.names.Lock()
	defer f.names.Unlock()
	cur, err := f.model(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	want := proto.Clone(cur).(*imagefarmv1.Model)
	setModelFields(want, req.GetModel(), req.GetFields())
	if err := checkModelRecord(want); err != nil {
		return nil, err
	}
	if err := f.checkNamesFree(ctx, cur.GetName(), want); err != nil {
		return nil, err
	}
	stored, err := f.core.UpdateModel(ctx, cur.GetName(), func(r *imagefarmv1.Model) error {
		if r.GetState() == imagefarmv1.ModelState_MODEL_STATE_UNSPECIFIED {
			return fmt.Errorf("model %q: %w", cur.GetName(), fleet.ErrNotFound)
		}
		setModelFields(r, req.GetModel(), req.GetFields())
		r.UpdateTime = now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.recordModel(ctx, stored, "changed "+strings.Join(req.GetFields(), ", ")+": "+modelText(stored))
	f.kick()
	return &imagefarmv1.UpdateModelResponse{Model: stored}, nil
}

// setModelFields sets m's fields named in fields from in.
func setModelFields(m, in *imagefarmv1.Model, fields []string) {
	for _, fl := range fields {
		switch fl {
		case "vendor":
			m.Vendor = in.GetVendor()
		case "aliases":
			m.Aliases = in.GetAliases()
		case "image_ref":
			m.ImageRef = in.GetImageRef()
		case "driver_bundle_ref":
			m.DriverBundleRef = in.GetDriverBundleRef()
		case "provisioning_refs":
			m.ProvisioningRefs = in.GetProvisioningRefs()
		case "update_refs":
			m.UpdateRefs = in.GetUpdateRefs()
		case "hook_refs":
			m.HookRefs = in.GetHookRefs()
		}
	}
}

// checkModelRecord refuses a malformed model: a name or alias that is no
// SMBIOS string, one named twice, a ref that does not parse.
func checkModelRecord(m *imagefarmv1.Model) error {
	if m.GetName() == "" {
		return fmt.Errorf(`model: no name: give the SMBIOS product name exactly as devices report it ("imagefarm devices ls" shows it): %w`, errBadRequest)
	}
	if err := cmp.Or(devices.CheckText("model name", m.GetName()), devices.CheckText("vendor", m.GetVendor())); err != nil {
		return err
	}
	if len(m.GetAliases()) > maxModelRefs {
		return fmt.Errorf("model %q: %d aliases, at most %d: %w", m.GetName(), len(m.GetAliases()), maxModelRefs, errBadRequest)
	}
	seen := map[string]bool{m.GetName(): true}
	for _, a := range m.GetAliases() {
		if err := devices.CheckText("alias", a); err != nil || a == "" {
			return fmt.Errorf("model %q: alias %q: give another SMBIOS product name its devices report: %w", m.GetName(), a, cmp.Or(err, errBadRequest))
		}
		if seen[a] {
			return fmt.Errorf("model %q: %q is named twice (as its name or an alias): %w", m.GetName(), a, errBadRequest)
		}
		seen[a] = true
	}
	refs := map[string][]string{"image": {m.GetImageRef()}, "driver bundle": {m.GetDriverBundleRef()},
		"provisioning package": m.GetProvisioningRefs(), "update": m.GetUpdateRefs(), "hook": m.GetHookRefs()}
	for what, list := range refs {
		if len(list) > maxModelRefs {
			return fmt.Errorf("model %q: %d %s refs, at most %d: %w", m.GetName(), len(list), what, maxModelRefs, errBadRequest)
		}
		for _, r := range list {
			if r == "" && len(list) == 1 {
				continue // none
			}
			if _, err := parseRef(r); err != nil {
				return fmt.Errorf("model %q: %s ref: %w", m.GetName(), what, err)
			}
		}
	}
	return nil
}

// modelNames are the SMBIOS product names a model's devices report.
func modelNames(m *imagefarmv1.Model) []string {
	return append([]string{m.GetName()}, m.GetAliases()...)
}

// checkNamesFree refuses m (stored as self) when one of its names is
// another model's name or alias, naming both.
func (f *fleetServer) checkNamesFree(ctx context.Context, self string, m *imagefarmv1.Model) error {
	all, err := f.fleet.Models(ctx)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.GetName() == self {
			continue
		}
		for _, n := range modelNames(m) {
			if slices.Contains(modelNames(o), n) {
				what := "an alias"
				if n == o.GetName() {
					what = "the name"
				}
				return fmt.Errorf("model %q: %q is already %s of model %q: a device's product name must name one model; "+
					"take it from %q first (imagefarm model alias %q --rm %q): %w", m.GetName(), n, what, o.GetName(), o.GetName(), o.GetName(), n, errNameTaken)
			}
		}
	}
	return nil
}

// model is the model whose name or alias is name.
func (f *fleetServer) model(ctx context.Context, name string) (*imagefarmv1.Model, error) {
	if err := devices.CheckText("model", name); err != nil || name == "" {
		return nil, fmt.Errorf("model %q: give a model's name or alias as imagefarm model ls lists them: %w", name, errBadRequest)
	}
	m, err := modelFor(ctx, f.fleet, name)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("no model is named %q (nor has it as an alias): imagefarm model ls lists them; add it with imagefarm model add: %w",
			name, fleet.ErrNotFound)
	}
	return m, nil
}

// modelFor is the model whose name or alias is product (what a device's
// SMBIOS says), nil when none is.
func modelFor(ctx context.Context, fs *fleet.Store, product string) (*imagefarmv1.Model, error) {
	if product == "" {
		return nil, nil
	}
	if m, err := fs.Model(ctx, product); err == nil {
		return m, nil
	} else if !errors.Is(err, fleet.ErrNotFound) {
		return nil, err
	}
	all, err := fs.Models(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range all {
		if slices.Contains(m.GetAliases(), product) {
			return m, nil
		}
	}
	return nil, nil
}

// ListModels implements ImageFarmService.ListModels.
func (f *fleetServer) ListModels(ctx context.Context, _ *imagefarmv1.ListModelsRequest) (*imagefarmv1.ListModelsResponse, error) {
	models, err := f.fleet.Models(ctx)
	if err != nil {
		return nil, err
	}
	unknown, err := f.unknownDevices(ctx, models)
	if err != nil {
		return nil, err
	}
	var groups []*imagefarmv1.UnknownModel
	for _, d := range unknown {
		i := slices.IndexFunc(groups, func(g *imagefarmv1.UnknownModel) bool { return g.Vendor == d.GetVendor() && g.Model == d.GetModel() })
		if i < 0 {
			groups = append(groups, &imagefarmv1.UnknownModel{Vendor: d.GetVendor(), Model: d.GetModel()})
			i = len(groups) - 1
		}
		groups[i].Serials = append(groups[i].Serials, d.GetSerial())
	}
	return &imagefarmv1.ListModelsResponse{Models: models, Unknown: groups}, nil
}

// unknownDevices are the devices whose product name is no model's name or
// alias: no rollout ever images them.
func (f *fleetServer) unknownDevices(ctx context.Context, models []*imagefarmv1.Model) ([]*imagefarmv1.Device, error) {
	all, err := f.dev.dev.records.List(ctx)
	return unknownModel(all, models), err
}

// unknownModel keeps the devices whose product name is no model's.
func unknownModel(devs []*imagefarmv1.Device, models []*imagefarmv1.Model) []*imagefarmv1.Device {
	known := map[string]bool{}
	for _, m := range models {
		for _, n := range modelNames(m) {
			known[n] = true
		}
	}
	return slices.DeleteFunc(devs, func(d *imagefarmv1.Device) bool { return known[d.GetModel()] })
}

// GetModel implements ImageFarmService.GetModel.
func (f *fleetServer) GetModel(ctx context.Context, req *imagefarmv1.GetModelRequest) (*imagefarmv1.GetModelResponse, error) {
	m, err := f.model(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	devs, err := f.modelDevices(ctx, m)
	if err != nil {
		return nil, err
	}
	pols, err := f.dev.dev.policies.List(ctx)
	if err != nil {
		return nil, err
	}
	pols = slices.DeleteFunc(pols, func(p *imagefarmv1.ResetPolicy) bool {
		return p.GetScope() != imagefarmv1.PolicyScope_POLICY_SCOPE_MODEL || !slices.Contains(modelNames(m), p.GetName())
	})
	return &imagefarmv1.GetModelResponse{Model: m, Devices: uint32(len(devs)), ResetPolicies: pols}, nil
}

// modelDevices are the known devices of m.
func (f *fleetServer) modelDevices(ctx context.Context, m *imagefarmv1.Model) ([]*imagefarmv1.Device, error) {
	all, err := f.dev.dev.records.List(ctx)
	names := modelNames(m)
	return slices.DeleteFunc(all, func(d *imagefarmv1.Device) bool { return !slices.Contains(names, d.GetModel()) }), err
}

func (f *fleetServer) recordModel(ctx context.Context, m *imagefarmv1.Model, what string) {
	f.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_MODEL_CHANGE,
		Model: m.GetName(), ImageRef: m.GetImageRef(), Message: what})
}

// modelText says what a model gets, for the audit trail.
func modelText(m *imagefarmv1.Model) string {
	return fmt.Sprintf("vendor %q, aliases [%s], image %q, drivers %q, provisioning [%s], updates [%s], hooks [%s]",
		m.GetVendor(), quoteAll(m.GetAliases()), m.GetImageRef(), m.GetDriverBundleRef(),
		strings.Join(m.GetProvisioningRefs(), " "), strings.Join(m.GetUpdateRefs(), " "), strings.Join(m.GetHookRefs(), " "))
}
