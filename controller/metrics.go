package controller

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// apiMetrics counts the controller's gRPC calls by method and code
// (imagefarm_api_calls_total) and the tasks that ended, on the registry of
// Config.Metrics.
type apiMetrics struct {
	calls    *prometheus.CounterVec
	ended    *prometheus.CounterVec // tasks by final state
	written  prometheus.Counter
	verified prometheus.Counter
	lost     prometheus.Counter // nodes declared lost
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
	}, []string{"method", "code"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagefarm_tasks_ended_total",
			Help: "Tasks that ended, by final state (DONE, FAILED, CANCELED), as their imagers or devices reported them.",
		}, []string{"state"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagefarm_written_bytes_total",
			Help: "Bytes the ended tasks wrote to drives, as their results report.",
		}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagefarm_verified_bytes_total",
			Help: "Bytes of the tasks that ended DONE: written, read back and matched against the image.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagefarm_nodes_lost_total",
			Help: "Imager nodes declared lost: silent for longer than the heartbeat TTL, fenced and their tasks ended LOST.",
		}),
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// collectors are every metric of m.
func (m *apiMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.calls, m.ended, m.written, m.verified, m.lost}
}

// nodeLost counts a node declared lost; nothing on a nil m.
func (m *apiMetrics) nodeLost() {
	if m != nil {
		m.lost.Inc()
	}
}

// taskEnded counts a task's first end, r; nothing on a nil m.
func (m *apiMetrics) taskEnded(r *imagefarmv1.TaskResult) {
	if m == nil {
		return
	}
	m.ended.WithLabelValues(strings.TrimPrefix(r.GetState().String(), "TASK_STATE_")).Inc()
	m.written.Add(float64(r.GetBytesWritten()))
	if r.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE {
		m.verified.Add(float64(r.GetBytesWritten()))
	}
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
