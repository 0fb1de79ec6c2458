// Package simimager is the one simulated imager node of imagefarm's tests
// and benchmarks. It speaks the real protocols, over connections of its
// own like a real node (a gRPC status stream to the controller, a NATS
// dispatch subscriber), and writes nothing: what it does with each
// assignment is its caller's. The controller's tests script every message
// by hand; the scheduling benchmark answers every assignment DONE and
// swaps the key.
package simimager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Config is one simulated node.
type Config struct {
	// Hello is what the node says first; its NodeId names the node.
	Hello *imagefarmv1.Hello
	// Conn reaches the controller, with the node's certificate.
	Conn grpc.ClientConnInterface
	// JetStream is the node's NATS; dispatch is read from it.
	JetStream jetstream.JetStream
	// Deliver takes each message on the node's dispatch subject, as a
	// wire.Handler does; nil acks it and does nothing else.
	Deliver wire.Handler
	// Reply, when set, takes each message the controller sends after the
	// HelloAck, in order, once the node has noted its Ack.
	Reply func(*imagefarmv1.ConnectResponse)
	// SubscriberError is the dispatch subscriber's OnError.
	SubscriberError func(error)
}

// Imager is one simulated node. Its methods may be called from any
// goroutine once Connect returned.
type Imager struct {
	cfg Config

	sendMu    sync.Mutex // serializes Send and numbers messages
	stream    imagefarmv1.ImagerService_ConnectClient
	endStream context.CancelFunc
	seq       uint64

	mu      sync.Mutex
	epoch   uint64
	acked   uint64                   // highest seq the controller acknowledged
	waiters map[uint64]chan struct{} // closed once their seq is acknowledged
}

// New returns a node that does nothing until Connect.
func New(cfg Config) *Imager {
	if cfg.Deliver == nil {
		cfg.Deliver = func(ctx context.Context, d *wire.Delivery) { d.Ack(ctx) }
	}
	return &Imager{cfg: cfg, waiters: map[uint64]chan struct{}{}}
}

// NodeID is the node's id, as its Hello says.
func (im *Imager) NodeID() string { return im.cfg.Hello.GetNodeId() }

// Epoch is the node's epoch, as the controller's HelloAck said.
func (im *Imager) Epoch() uint64 {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.epoch
}

// Connect opens the status stream, which lives until ctx or Run ends,
// and says Hello. It returns the controller's HelloAck, or what the
// controller answered instead.
func (im *Imager) Connect(ctx context.Context) (*imagefarmv1.HelloAck, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := imagefarmv1.NewImagerServiceClient(im.cfg.Conn).Connect(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("node %s: open status stream: %w", im.NodeID(), err)
	}
	im.stream, im.endStream = stream, cancel
	if err := stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: im.cfg.Hello}}); err != nil {
		return nil, fmt.Errorf("node %s: send hello: %w", im.NodeID(), err)
	}
	m, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("node %s: hello: %w", im.NodeID(), err)
	}
	ack := m.GetHelloAck()
	if ack == nil {
		return nil, fmt.Errorf("node %s: hello answered %v, want HelloAck", im.NodeID(), m)
	}
	im.mu.Lock()
	im.epoch = ack.GetEpoch()
	im.mu.Unlock()
	return ack, nil
}

// Run reads the controller's messages and the node's dispatch subject
// until ctx ends, then returns nil, or until the status stream or the
// subscription fails, and returns why. The status stream ends with it.
func (im *Imager) Run(ctx context.Context) error {
	if im.stream == nil {
		return errors.New("simimager: Run before Connect")
	}
	defer im.endStream()
	sub, err := wire.NewSubscriber(im.cfg.JetStream, wire.SubscriberConfig{NodeID: im.NodeID(), OnError: im.cfg.SubscriberError}, im.cfg.Deliver)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sub.Run(gctx) })
	g.Go(func() error { return im.receive(gctx) })
	g.Go(func() error { <-gctx.Done(); im.endStream(); return nil }) // ends a Recv
	return g.Wait()
}

// receive notes the controller's acks and hands every message to Reply,
// until the stream ends.
func (im *Imager) receive(ctx context.Context) error {
	for {
		m, err := im.stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("node %s: status stream: %w", im.NodeID(), err)
		}
		if seq := m.GetAck().GetSeq(); seq > 0 {
			im.ack(seq)
		}
		if im.cfg.Reply != nil {
			im.cfg.Reply(m)
		}
	}
}

// Send numbers m, sends it and returns its seq.
func (im *Imager) Send(m *imagefarmv1.ConnectRequest) (uint64, error) {
	im.sendMu.Lock()
	defer im.sendMu.Unlock()
	im.seq++
	m.Seq = im.seq
	if err := im.stream.Send(m); err != nil {
		return 0, fmt.Errorf("node %s: send seq %d: %w", im.NodeID(), m.Seq, err)
	}
	return m.Seq, nil
}

// Beat sends a heartbeat every interval until ctx ends, like a healthy
// node, and returns nil then; it returns why a heartbeat could not be
// sent.
func (im *Imager) Beat(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		im.sendMu.Lock()
		err := im.stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Heartbeat{Heartbeat: &imagefarmv1.Heartbeat{}}})
		im.sendMu.Unlock()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("node %s: send heartbeat: %w", im.NodeID(), err)
		}
	}
}

func (im *Imager) ack(seq uint64) {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.acked = max(im.acked, seq)
	for s, ch := range im.waiters {
		if s <= seq {
			close(ch)
			delete(im.waiters, s)
		}
	}
}

// WaitAck returns once the controller acknowledged seq, or ctx ended.
func (im *Imager) WaitAck(ctx context.Context, seq uint64) error {
	im.mu.Lock()
	if im.acked >= seq {
		im.mu.Unlock()
		return nil
	}
	ch, ok := im.waiters[seq]
	if !ok {
		ch = make(chan struct{})
		im.waiters[seq] = ch
	}
	im.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: ack of seq %d: %w", im.NodeID(), seq, context.Cause(ctx))
	}
}
