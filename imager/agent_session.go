package imager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

const (
	// reconnectMin and reconnectMax bound the pause between attempts to
	// open the status stream; it doubles after each failed attempt.
	reconnectMin = 200 * time.Millisecond
	reconnectMax = 5 * time.Second
	// dialMax caps the pause between attempts to reach the controller's
	// host, which a stream attempt waits for: small, so that a node is
	// back within about a second of a restarted controller, well inside
	// its heartbeat TTL. A connection attempt costs the controller little.
	dialMax = time.Second
	// helloTimeout bounds the delay for HelloAck, so that a controller that
	// accepted the stream and hangs does not hold the node.
	helloTimeout = 10 * time.Second
	// keepaliveTimeout is how long data sent to the controller may go
	// unacknowledged by its host before the connection is given up: gRPC
	// sets it as TCP_USER_TIMEOUT once keepalive is on, and the heartbeats
	// keep data flowing, so a controller host that vanished without
	// closing the connection is noticed within heartbeat + keepaliveTimeout.
	// keepaliveTime, the pause before a ping on a silent connection, is the
	// least a default gRPC server accepts (a shorter one gets the
	// connection closed for too many pings).
	keepaliveTime    = 5 * time.Minute
	keepaliveTimeout = 10 * time.Second
)

// insecureWarning is logged at every start of an agent without TLS.
const insecureWarning = "INSECURE: no TLS: anyone on the network can pose as the controller to this node, or report as this node to the controller"

// errNoHelloAck is returned when the controller answers Hello with
// something else.
var errNoHelloAck = errors.New("imager: controller did not answer Hello with HelloAck")

// dial prepares the client connection to the controller; it connects
// lazily, and again by itself after a failure.
func (a *Agent) dial() (imagefarmv1.ImagerServiceClient, func(), error) {
	creds := insecure.NewCredentials()
	if a.cfg.TLS != nil {
		creds = credentials.NewTLS(a.cfg.TLS)
	}
	conn, err := grpc.NewClient(a.cfg.Controller,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: dialMax},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("controller %s: %w", a.cfg.Controller, err)
	}
	return imagefarmv1.NewImagerServiceClient(conn), func() { conn.Close() }, nil
}

// stayConnected keeps one status stream open until ctx ends, opening a new
// one after a pause that doubles up to reconnectMax (jittered) while
// attempts keep failing.
func (a *Agent) stayConnected(ctx context.Context, client imagefarmv1.ImagerServiceClient) error {
	// Jittered, so a farm of imagers does not come back in step after a
	// controller restart.
	pause := wait.Backoff{Min: reconnectMin, Max: reconnectMax, Jitter: true}
	for {
		start := time.Now()
		greeted, err := a.session(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("controller stream ended", "controller", a.cfg.Controller, "error", err)
		if greeted && time.Since(start) > reconnectMax {
			pause.Reset() // it was up for a while: try again soon
		}
		if !pause.Wait(ctx) {
			return nil
		}
	}
}

// session runs one status stream: Hello, HelloAck, then acks and stops
// from the controller and the outbox and heartbeats to it, until either
// side breaks it. greeted reports whether the controller accepted Hello.
func (a *Agent) session(ctx context.Context, client imagefarmv1.ImagerServiceClient) (greeted bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Connect(ctx, grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("open status stream: %w", err)
	}
	a.out.dropDriveEvents() // the Hello's inventory replaces them
	hello, err := a.hello()
	if err != nil {
		return false, err
	}
	if err := stream.Send(hello); err != nil {
		return false, fmt.Errorf("send hello: %w", err)
	}
	ack, err := recvHelloAck(stream, cancel)
	if err != nil {
		return false, err
	}
	interval := a.greeted(ack)
	// Whichever direction fails first ends the stream (cancel), which
	// ends the other.
	var g errgroup.Group
	g.Go(func() error { defer cancel(); return a.receive(stream) })
	g.Go(func() error { defer cancel(); return a.transmit(ctx, stream, interval) })
	return true, g.Wait()
}

// recvHelloAck waits for the answer to Hello, ending the stream (cancel)
// when it does not come within helloTimeout.
func recvHelloAck(stream imagefarmv1.ImagerService_ConnectClient, cancel func()) (*imagefarmv1.HelloAck, error) {
	t := time.AfterFunc(helloTimeout, cancel)
	defer t.Stop()
	m, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("delay for hello ack: %w", err)
	}
	if m.GetHelloAck() == nil {
		return nil, errNoHelloAck
	}
	return m.GetHelloAck(), nil
}

// greeted takes in a HelloAck: the node's epoch, which fences every run
// under an older one, and what the controller already applied, after which
// the kept messages go out again. It returns the heartbeat interval.
func (a *Agent) greeted(ack *imagefarmv1.HelloAck) time.Duration {
	a.fence(ack.GetEpoch())
	a.out.restart(ack.GetLastSeq())
	interval := a.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = ack.GetHeartbeatInterval().AsDuration()
	}
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	if ttl := ack.GetHeartbeatTtl().AsDuration(); ttl > 0 && interval >= ttl {
		a.log.Warn("heartbeat interval is not below the controller's TTL: the node will be declared lost",
			"heartbeat_interval", interval, "heartbeat_ttl", ttl)
	}
	a.log.Info("connected to controller", "controller", a.cfg.Controller, "epoch", ack.GetEpoch(),
		"last_seq", ack.GetLastSeq(), "resending", a.out.len(), "heartbeat_interval", interval)
	return interval
}

// receive applies what the controller sends until the stream breaks.
func (a *Agent) receive(stream imagefarmv1.ImagerService_ConnectClient) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		switch b := m.GetBody().(type) {
		case *imagefarmv1.ConnectResponse_Ack:
			a.out.ack(b.Ack.GetSeq())
		case *imagefarmv1.ConnectResponse_StopTask:
			st := b.StopTask
			level := slog.LevelWarn // the node ran something it should not have
			if st.GetReason() == imagefarmv1.StopReason_STOP_REASON_CANCELED {
				level = slog.LevelInfo
			}
			a.log.Log(context.Background(), level, "controller stops task", "task_id", st.GetTaskId(), "epoch", st.GetEpoch(),
				"reason", st.GetReason(), "message", st.GetMessage())
			a.stop(taskKey{st.GetTaskId(), st.GetEpoch()}, stopNote{stop: true, reason: st.GetReason()})
		default:
			a.log.Warn("unexpected message from controller", "message", m)
		}
	}
}

// transmit sends the outbox as it fills, and a heartbeat every interval,
// until the stream breaks or ctx ends.
func (a *Agent) transmit(ctx context.Context, stream imagefarmv1.ImagerService_ConnectClient, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for _, m := range a.out.next() {
			if err := stream.Send(m); err != nil {
				return fmt.Errorf("send seq %d: %w", m.GetSeq(), err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.out.wake:
		case <-tick.C:
			hb := &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Heartbeat{
				Heartbeat: &imagefarmv1.Heartbeat{SendTime: timestamppb.Now()}}}
			if err := stream.Send(hb); err != nil {
				return fmt.Errorf("send heartbeat: %w", err)
			}
		}
	}
}
