package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// bootstrapTokenName names the admin token Config.BootstrapTokenFile gets.
const bootstrapTokenName = "bootstrap"

// CreateToken implements ImageFarmService.CreateToken.
func (a *apiServer) CreateToken(ctx context.Context, req *imagefarmv1.CreateTokenRequest) (*imagefarmv1.CreateTokenResponse, error) {
	who := actor(ctx)
	t, secret, err := a.tokens.Create(ctx, req.GetName(), req.GetRole(), who)
	if err != nil {
		return nil, err
	}
	a.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: who, Action: imagefarmv1.AuditAction_AUDIT_ACTION_TOKEN_CREATE,
		Message: fmt.Sprintf("token %q (id %s), role %s", t.GetName(), t.GetId(), roleName(t.GetRole()))})
	return &imagefarmv1.CreateTokenResponse{Token: t, Secret: secret}, nil
}

// ListTokens implements ImageFarmService.ListTokens.
func (a *apiServer) ListTokens(ctx context.Context, _ *imagefarmv1.ListTokensRequest) (*imagefarmv1.ListTokensResponse, error) {
	ts, err := a.tokens.List(ctx)
	if err != nil {
		return nil, err
	}
	return &imagefarmv1.ListTokensResponse{Tokens: ts}, nil
}

// RevokeToken implements ImageFarmService.RevokeToken.
func (a *apiServer) RevokeToken(ctx context.Context, req *imagefarmv1.RevokeTokenRequest) (*imagefarmv1.RevokeTokenResponse, error) {
	t, err := a.tokens.Revoke(ctx, req.GetNameOrId(), req.GetForce())
	if err != nil {
		return nil, err
	}
	a.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_TOKEN_REVOKE,
		Message: fmt.Sprintf("token %q (id %s), role %s", t.GetName(), t.GetId(), roleName(t.GetRole()))})
	return &imagefarmv1.RevokeTokenResponse{Token: t}, nil
}

// bootstrapToken writes a new admin token to file when the farm has no
// admin token: the first time a controller starts, so that its operator
// can create the others, and after the last admin token was revoked with
// force. With an admin token, it changes nothing.
func (a *apiServer) bootstrapToken(ctx context.Context, file string) error {
	has, err := a.tokens.HasAdmin(ctx)
	if err != nil || has {
		return err
	}
	t, secret, err := a.tokens.Create(ctx, bootstrapTokenName, imagefarmv1.Role_ROLE_ADMIN, controllerActor)
	if errors.Is(err, tokens.ErrExists) { // a viewer or operator token has the name
		t, secret, err = a.tokens.Create(ctx, bootstrapTokenName+"-"+time.Now().UTC().Format("20060102-150405"), imagefarmv1.Role_ROLE_ADMIN, controllerActor)
	}
	if err != nil {
		return err
	}
	if err := tokens.WriteSecret(file, secret); err != nil {
		a.tokens.Revoke(ctx, t.GetId(), true)
		return fmt.Errorf("bootstrap token file: %w", err)
	}
	a.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: controllerActor, Action: imagefarmv1.AuditAction_AUDIT_ACTION_TOKEN_CREATE,
		Message: fmt.Sprintf("token %q (id %s), role admin, written to %s", t.GetName(), t.GetId(), file)})
	a.log.Warn("no admin API token existed: wrote one; create named tokens with it, then revoke it",
		"file", file, "token", t.GetName(), "id", t.GetId())
	return nil
}
