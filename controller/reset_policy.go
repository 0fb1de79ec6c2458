package controller

import (
	"context"
	"fmt"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// SetResetPolicy implements ImageFarmService.SetResetPolicy (admin): the
// record goes through the core's policy table and is audited.
func (c *deviceServer) SetResetPolicy(ctx context.Context, req *imagefarmv1.SetResetPolicyRequest) (*imagefarmv1.SetResetPolicyResponse, error) {
	name, what, err := c.policyTarget(ctx, req.GetScope(), req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	st := req.GetState()
	if st != imagefarmv1.ResetPermission_RESET_PERMISSION_ALLOW && st != imagefarmv1.ResetPermission_RESET_PERMISSION_DENY {
		return nil, toStatus(fmt.Errorf("reset policy: %v: want allow or deny: %w", st, errBadRequest))
	}
	who := actor(ctx)
	rec, err := core.ApplyResetPolicy(what, func(fn func(*imagefarmv1.ResetPolicy) error) (*imagefarmv1.ResetPolicy, error) {
		return c.dev.policies.Update(ctx, req.GetScope(), name, fn)
	}, func(r *imagefarmv1.ResetPolicy) error {
		r.State, r.SetBy, r.SetTime = st, who, now()
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	c.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: who, Action: imagefarmv1.AuditAction_AUDIT_ACTION_RESET_POLICY,
		DeviceId: deviceIDOf(rec), Message: fmt.Sprintf("reset %s for %s", permissionWord(st), what)})
	c.log.Info("reset policy set", "scope", rec.GetScope(), "name", rec.GetName(), "state", st, "by", who)
	return &imagefarmv1.SetResetPolicyResponse{Policy: rec}, nil
}

// policyTarget checks a policy's scope and name and returns the name to
// store (a device's id for a device named by serial or MAC) and the scope
// in words.
func (c *deviceServer) policyTarget(ctx context.Context, scope imagefarmv1.PolicyScope, name string) (string, string, error) {
	switch scope {
	case imagefarmv1.PolicyScope_POLICY_SCOPE_POOL:
		if err := ident.Pool(name); err != nil || name == "" {
			return "", "", fmt.Errorf("reset policy: pool %q: want a pool name as devices set --pool gives it: %w", name, errBadRequest)
		}
		return name, fmt.Sprintf("pool %q", name), nil
	case imagefarmv1.PolicyScope_POLICY_SCOPE_MODEL:
		if err := checkModel(name); err != nil {
			return "", "", fmt.Errorf("reset policy: %w", err)
		}
		return name, fmt.Sprintf("model %q", name), nil
	case imagefarmv1.PolicyScope_POLICY_SCOPE_DEVICE:
		d, err := c.oneDevice(ctx, name)
		if err != nil {
			return "", "", err
		}
		return d.GetId(), fmt.Sprintf("device %s (serial %q)", d.GetId(), d.GetSerial()), nil
	}
	return "", "", fmt.Errorf("reset policy: scope %v: want pool, model or device: %w", scope, errBadRequest)
}

func permissionWord(p imagefarmv1.ResetPermission) string {
	if p == imagefarmv1.ResetPermission_RESET_PERMISSION_ALLOW {
		return "allowed"
	}
	return "denied"
}

// deviceIDOf is the device a policy record is for, "" for a pool or model.
func deviceIDOf(r *imagefarmv1.ResetPolicy) string {
	if r.GetScope() == imagefarmv1.PolicyScope_POLICY_SCOPE_DEVICE {
		return r.GetName()
	}
	return ""
}

// ListResetPolicies implements ImageFarmService.ListResetPolicies.
func (c *deviceServer) ListResetPolicies(ctx context.Context, _ *imagefarmv1.ListResetPoliciesRequest) (*imagefarmv1.ListResetPoliciesResponse, error) {
	all, err := c.dev.policies.List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &imagefarmv1.ListResetPoliciesResponse{Policies: all}, nil
}

// SetDeviceFacts implements ImageFarmService.SetDeviceFacts (admin): a
// device's pool and hybrid join, through the core's device table, audited.
func (c *deviceServer) SetDeviceFacts(ctx context.Context, req *imagefarmv1.SetDeviceFactsRequest) (*imagefarmv1.SetDeviceFactsResponse, error) {
	if req.Pool == nil && req.HybridJoined == nil {
		return nil, toStatus(fmt.Errorf("device facts: nothing to set: give --pool or --hybrid-joined: %w", errBadRequest))
	}
	if err := ident.Pool(req.GetPool()); err != nil {
		return nil, toStatus(fmt.Errorf("device facts: %w", err))
	}
	d, err := c.oneDevice(ctx, req.GetDevice())
	if err != nil {
		return nil, toStatus(err)
	}
	d, err = c.updateDevice(ctx, d.GetId(), func(d *imagefarmv1.Device) error {
		if req.Pool != nil {
			d.Pool = req.GetPool()
		}
		if req.HybridJoined != nil {
			d.HybridJoined = req.GetHybridJoined()
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	c.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_DEVICE_FACTS,
		DeviceId: d.GetId(), Message: fmt.Sprintf("serial %q: pool %q, hybrid-joined %v", d.GetSerial(), d.GetPool(), d.GetHybridJoined())})
	return &imagefarmv1.SetDeviceFactsResponse{Device: d}, nil
}

// resetAllowed refuses a reset of d that its policy or its hybrid join
// forbids, with the failure reason a task refused at placement gets.
func (c *deviceServer) resetAllowed(ctx context.Context, d *imagefarmv1.Device) (imagefarmv1.FailureReason, error) {
	if d.GetHybridJoined() {
		return imagefarmv1.FailureReason_FAILURE_REASON_GUARD_HYBRID_JOINED, fmt.Errorf(
			"device %s is hybrid-joined (on-premises AD and Azure AD): hybrid-joined devices need a full wipe, not a reset: %w",
			d.GetSerial(), errDeviceRefused)
	}
	pol, err := c.dev.policies.Effective(ctx, d)
	if err != nil {
		return imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, err
	}
	if !pol.GetAllowed() {
		return imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY, fmt.Errorf(
			"reset is off for device %s (%s): an admin turns it on with `imagefarm device policy set --reset allow --device %s` (or --model, --pool): %w",
			d.GetSerial(), pol.GetReason(), d.GetSerial(), errDeviceRefused)
	}
	return 0, nil
}

// SetResetPolicy implements ImageFarmService.SetResetPolicy.
func (a *apiServer) SetResetPolicy(ctx context.Context, req *imagefarmv1.SetResetPolicyRequest) (*imagefarmv1.SetResetPolicyResponse, error) {
	return a.dev.SetResetPolicy(ctx, req)
}

// ListResetPolicies implements ImageFarmService.ListResetPolicies.
func (a *apiServer) ListResetPolicies(ctx context.Context, req *imagefarmv1.ListResetPoliciesRequest) (*imagefarmv1.ListResetPoliciesResponse, error) {
	return a.dev.ListResetPolicies(ctx, req)
}

// SetDeviceFacts implements ImageFarmService.SetDeviceFacts.
func (a *apiServer) SetDeviceFacts(ctx context.Context, req *imagefarmv1.SetDeviceFactsRequest) (*imagefarmv1.SetDeviceFactsResponse, error) {
	return a.dev.SetDeviceFacts(ctx, req)
}
