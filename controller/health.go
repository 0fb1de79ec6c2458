package controller

import (
	"context"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// registerProbes adds the standard gRPC health service (no token: load
// balancers and probes call it; see policy) and server reflection (any
// valid token) to srv. The health server it returns says NOT_SERVING until
// trackHealth runs.
func registerProbes(srv *grpc.Server) *health.Server {
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return hs
}

// trackHealth keeps hs SERVING while nc is connected and NOT_SERVING while
// it is not, until ctx ends; then NOT_SERVING for good. It reads the
// connection's state at each change rather than the change itself: the
// channel drops events while full.
func trackHealth(ctx context.Context, nc *nats.Conn, hs *health.Server) {
	ch := nc.StatusChanged()
	defer nc.RemoveStatusListener(ch)
	for {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if nc.IsConnected() {
			st = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("", st)
		select {
		case <-ctx.Done():
			hs.Shutdown()
			return
		case <-ch:
		}
	}
}
