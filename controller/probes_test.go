package controller_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestHealthFollowsNATS: the standard health service answers a caller
// without a token SERVING while the controller's NATS is up, and turns
// NOT_SERVING when NATS goes away.
func TestHealthFollowsNATS(t *testing.T) {
	f := farm.Start(t, farm.Options{})
	hc := healthpb.NewHealthClient(f.Dial(t, f.ClientCreds(t, "")))
	ctx := t.Context()
	got, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check without a token = %v, want it answered", err)
	}
	if got.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check = %v, want SERVING", got.GetStatus())
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v; want SERVING", m.GetStatus(), err)
	}
	f.NATS.Shutdown()
	m, err := w.Recv()
	if err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after NATS stopped = %v, %v; want NOT_SERVING", m.GetStatus(), err)
	}
}

// TestReflectionNeedsAToken: server reflection lists the farm's services
// to any valid token and is refused without one.
func TestReflectionNeedsAToken(t *testing.T) {
	f := farm.Start(t, farm.Options{})
	list := func(opts ...grpc.DialOption) ([]string, error) {
		rc := reflectionpb.NewServerReflectionClient(f.Dial(t, f.ClientCreds(t, ""), opts...))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		s, err := rc.ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return nil, err
		}
		r, err := s.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, svc := range r.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		return names, nil
	}
	if _, err := list(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reflection without a token = %v, want Unauthenticated", err)
	}
	names, err := list(f.Bearer(f.Token(t, "viewer", imagefarmv1.Role_ROLE_VIEWER)))
	if err != nil {
		t.Fatalf("reflection with a viewer token = %v", err)
	}
	for _, want := range []string{"imagefarm.v1.ImageFarmService", "imagefarm.v1.ImagerService", "imagefarm.v1.DeviceService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, want %s among them", names, want)
		}
	}
}
