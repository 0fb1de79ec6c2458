package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// errConsoleRefused: the token typed at a device's console is unknown,
// revoked, or below operator. PermissionDenied.
var errConsoleRefused = errors.New("controller: console credential refused")

// maxConsoleToken bounds what a console may send as a token.
const maxConsoleToken = 256

// CheckResetTrigger implements DeviceService.CheckResetTrigger, the local
// trigger: without a token it says whether the calling device's policy
// allows reset; with one, it checks the token (an operator's or admin's;
// anything else is refused and audited) and submits a reset of the device
// in the token's name, which the device runs at its next network boot.
func (c *deviceServer) CheckResetTrigger(ctx context.Context, req *imagefarmv1.CheckResetTriggerRequest) (*imagefarmv1.CheckResetTriggerResponse, error) {
	id := callDevice(ctx).DeviceID
	c.heard(id)
	dev, err := c.dev.records.Get(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	_, refusal := c.resetAllowed(ctx, dev)
	if refusal != nil && !errors.Is(refusal, errDeviceRefused) {
		return nil, toStatus(refusal)
	}
	if req.GetToken() == "" {
		if refusal != nil {
			return &imagefarmv1.CheckResetTriggerResponse{Reason: message(refusal)}, nil
		}
		return &imagefarmv1.CheckResetTriggerResponse{Allowed: true, Reason: "reset is allowed: type an operator token to reset this device"}, nil
	}
	tok, err := c.consoleToken(ctx, req.GetToken())
	if err == nil {
		err = refusal
	}
	if err != nil {
		if errors.Is(err, errConsoleRefused) || errors.Is(err, errDeviceRefused) {
			c.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: deviceActor(id), Action: imagefarmv1.AuditAction_AUDIT_ACTION_RESET_REFUSED,
				DeviceId: id, ImageRef: req.GetImageRef(), Message: "at the device's console: " + message(err)})
			c.log.Warn("console reset refused", "device_id", id, "error", err)
		}
		return nil, toStatus(err)
	}
	resp, err := c.submitReset(context.WithValue(ctx, tokenKey{}, tok), &imagefarmv1.SubmitResetRequest{
		Serials: []string{dev.GetSerial()}, ImageRef: req.GetImageRef(), Spec: &imagefarmv1.ResetSpec{WimIndex: req.GetWimIndex()},
		AfterWrite: imagefarmv1.AfterWrite_AFTER_WRITE_REBOOT, Labels: map[string]string{"trigger": "console"}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &imagefarmv1.CheckResetTriggerResponse{Allowed: true, JobId: resp.GetJob().GetId(),
		Reason: fmt.Sprintf("reset job %s submitted by %s: the device reboots from the network to run it", resp.GetJob().GetId(), tok.GetName())}, nil
}

// consoleToken is the stored token typed at a console, if it is an
// operator's or an admin's.
func (c *deviceServer) consoleToken(ctx context.Context, secret string) (*imagefarmv1.Token, error) {
	if len(secret) > maxConsoleToken {
		return nil, fmt.Errorf("the token typed is %d bytes, longer than any the farm issues: %w", len(secret), errConsoleRefused)
	}
	tok, err := c.tokens.Lookup(ctx, secret)
	if errors.Is(err, tokens.ErrUnknown) {
		return nil, fmt.Errorf("the token typed is unknown or revoked: type an operator's token (imagefarm token create --role operator): %w", errConsoleRefused)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errTokensUnavailable)
	}
	if tok.GetRole() < imagefarmv1.Role_ROLE_OPERATOR {
		return nil, fmt.Errorf("token %q is a %s's: a reset needs an operator's or an admin's: %w", tok.GetName(), roleName(tok.GetRole()), errConsoleRefused)
	}
	return tok, nil
}
