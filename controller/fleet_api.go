package controller

import (
	"context"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// The client API's model and rollout methods are the fleet server's.

// AddModel implements ImageFarmService.AddModel.
func (a *apiServer) AddModel(ctx context.Context, req *imagefarmv1.AddModelRequest) (*imagefarmv1.AddModelResponse, error) {
	return a.fleet.AddModel(ctx, req)
}

// UpdateModel implements ImageFarmService.UpdateModel.
func (a *apiServer) UpdateModel(ctx context.Context, req *imagefarmv1.UpdateModelRequest) (*imagefarmv1.UpdateModelResponse, error) {
	return a.fleet.UpdateModel(ctx, req)
}

// ListModels implements ImageFarmService.ListModels.
func (a *apiServer) ListModels(ctx context.Context, req *imagefarmv1.ListModelsRequest) (*imagefarmv1.ListModelsResponse, error) {
	return a.fleet.ListModels(ctx, req)
}

// GetModel implements ImageFarmService.GetModel.
func (a *apiServer) GetModel(ctx context.Context, req *imagefarmv1.GetModelRequest) (*imagefarmv1.GetModelResponse, error) {
	return a.fleet.GetModel(ctx, req)
}

// StartRollout implements ImageFarmService.StartRollout.
func (a *apiServer) StartRollout(ctx context.Context, req *imagefarmv1.StartRolloutRequest) (*imagefarmv1.StartRolloutResponse, error) {
	return a.fleet.StartRollout(ctx, req)
}

// ListRollouts implements ImageFarmService.ListRollouts.
func (a *apiServer) ListRollouts(ctx context.Context, req *imagefarmv1.ListRolloutsRequest) (*imagefarmv1.ListRolloutsResponse, error) {
	return a.fleet.ListRollouts(ctx, req)
}

// ApproveRollout implements ImageFarmService.ApproveRollout.
func (a *apiServer) ApproveRollout(ctx context.Context, req *imagefarmv1.ApproveRolloutRequest) (*imagefarmv1.ApproveRolloutResponse, error) {
	return a.fleet.ApproveRollout(ctx, req)
}

// PauseRollout implements ImageFarmService.PauseRollout.
func (a *apiServer) PauseRollout(ctx context.Context, req *imagefarmv1.PauseRolloutRequest) (*imagefarmv1.PauseRolloutResponse, error) {
	return a.fleet.PauseRollout(ctx, req)
}

// ResumeRollout implements ImageFarmService.ResumeRollout.
func (a *apiServer) ResumeRollout(ctx context.Context, req *imagefarmv1.ResumeRolloutRequest) (*imagefarmv1.ResumeRolloutResponse, error) {
	return a.fleet.ResumeRollout(ctx, req)
}

// AbortRollout implements ImageFarmService.AbortRollout.
func (a *apiServer) AbortRollout(ctx context.Context, req *imagefarmv1.AbortRolloutRequest) (*imagefarmv1.AbortRolloutResponse, error) {
	return a.fleet.AbortRollout(ctx, req)
}
