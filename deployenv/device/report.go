package device

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// reporter keeps the device's Report stream: every message but a
// heartbeat gets a seq and is kept until the controller acknowledges it,
// and sent again, in order, after a reconnect (ImagerService.Connect's
// discipline).
type reporter struct {
	c        imagefarmv1.DeviceServiceClient
	cred     grpc.CallOption
	interval time.Duration
	log      *slog.Logger
	onStop   func(*imagefarmv1.StopTask)

	mu      sync.Mutex
	seq     uint64
	acked   uint64
	unacked []*imagefarmv1.ReportRequest
	changed chan struct{}                       // closed and replaced when a message is added or acknowledged
	sent    map[imagefarmv1.TaskState]time.Time // when progress in each state was last queued
}

// progress queues a task's progress in state, at most once a second per
// state. It is called from several goroutines.
func (r *reporter) progress(a *imagefarmv1.TaskAssignment, state imagefarmv1.TaskState, done, total int64) {
	r.mu.Lock()
	due := time.Since(r.sent[state]) >= time.Second
	if due {
		r.sent[state] = time.Now()
	}
	r.mu.Unlock()
	if due {
		r.add(&imagefarmv1.ReportRequest{Body: &imagefarmv1.ReportRequest_TaskProgress{TaskProgress: &imagefarmv1.TaskProgress{
			TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: state, BytesDone: uint64(max(done, 0)), BytesTotal: uint64(max(total, 0))}}})
	}
}

func newReporter(c imagefarmv1.DeviceServiceClient, cred grpc.CallOption, interval time.Duration, log *slog.Logger,
	onStop func(*imagefarmv1.StopTask)) *reporter {
	return &reporter{c: c, cred: cred, interval: interval, log: log, onStop: onStop, changed: make(chan struct{}),
		sent: map[imagefarmv1.TaskState]time.Time{}}
}

// add queues m with the next seq and returns that seq.
func (r *reporter) add(m *imagefarmv1.ReportRequest) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	m.Seq = r.seq
	r.unacked = append(r.unacked, m)
	r.signal()
	return m.Seq
}

// signal wakes whoever waits on a change; r.mu is held.
func (r *reporter) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// deliver queues m and waits until the controller has recorded it.
func (r *reporter) deliver(ctx context.Context, m *imagefarmv1.ReportRequest) error {
	seq := r.add(m)
	for {
		r.mu.Lock()
		done, changed := r.acked >= seq, r.changed
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run keeps a stream open until ctx ends, reconnecting after a failure.
func (r *reporter) run(ctx context.Context) error {
	pause := wait.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("device report stream lost; reconnecting", "error", err)
		if !pause.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// session is one stream: it sends what is unacknowledged, then new
// messages and heartbeats, while a receiver applies Acks and StopTasks.
func (r *reporter) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.c.Report(ctx, r.cred)
	if err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() { recvErr <- r.receive(stream) }()
	var sent uint64 // highest seq sent on this stream
	beat := time.NewTicker(r.interval)
	defer beat.Stop()
	if err := stream.Send(&imagefarmv1.ReportRequest{Body: &imagefarmv1.ReportRequest_Heartbeat{Heartbeat: &imagefarmv1.Heartbeat{}}}); err != nil {
		return err
	}
	for {
		r.mu.Lock()
		var todo []*imagefarmv1.ReportRequest
		for _, m := range r.unacked {
			if m.GetSeq() > sent {
				todo = append(todo, m)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		for _, m := range todo {
			if err := stream.Send(m); err != nil {
				return err
			}
			sent = m.GetSeq()
		}
		select {
		case <-changed:
		case <-beat.C:
			if err := stream.Send(&imagefarmv1.ReportRequest{Body: &imagefarmv1.ReportRequest_Heartbeat{Heartbeat: &imagefarmv1.Heartbeat{}}}); err != nil {
				return err
			}
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// receive applies what the controller sends until the stream ends.
func (r *reporter) receive(stream imagefarmv1.DeviceService_ReportClient) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the controller ended the report stream")
		}
		if err != nil {
			return err
		}
		if s := m.GetStopTask(); s != nil {
			r.onStop(s)
		}
		if a := m.GetAck(); a != nil {
			r.mu.Lock()
			r.acked = max(r.acked, a.GetSeq())
			for len(r.unacked) > 0 && r.unacked[0].GetSeq() <= r.acked {
				r.unacked = r.unacked[1:]
			}
			r.signal()
			r.mu.Unlock()
		}
	}
}
