package controller

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// apiMetrics counts the controller's gRPC calls by method and code
// (imagefarm_api_calls_total), on the registry of Config.Metrics.
type apiMetrics struct {
	calls *prometheus.CounterVec
}

// newAPIMetrics registers the API counters on reg; on a registry of their
// own, which nobody scrapes, when reg is nil.
func newAPIMetrics(reg prometheus.Registerer) (*apiMetrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &apiMetrics{calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagefarm_api_calls_total",
		Help: "gRPC calls the controller answered, by full method and status code (OK for a success).",
	}, []string{"method", "code"})}
	if err := reg.Register(m.calls); err != nil {
		return nil, err
	}
	return m, nil
}

// unary and stream count each call once it ends, with the code it ends
// with. They run outside statusUnary and statusStream, so the code is the
// one the caller gets.
func (m *apiMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *apiMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}
