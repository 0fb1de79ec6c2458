package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/wait"
)

// subscribeMaxWait caps the pause between attempts to (re)attach to the
// consumer, so a node resumes within seconds of NATS or the stream coming
// back.
const subscribeMaxWait = 5 * time.Second

// Handler receives a node's valid messages one at a time, in the order the
// node's consumer delivers them. It must return quickly, handing long work
// to a goroutine the caller owns: the next message, maybe the cancel of
// the task just received, waits until it returns. The Delivery stays usable
// after the handler returns; the caller must eventually Ack, Nak or Term it,
// or leave it to be delivered again after AckWait.
type Handler func(ctx context.Context, d *Delivery)

// SubscriberConfig configures one imager node's subscription.
type SubscriberConfig struct {
	// NodeID is the node whose subject is read; it must pass ident.NodeID.
	NodeID string
	// Dispatch sets the node's consumer. The stream settings in it are not
	// used: the controller owns the stream.
	Dispatch Config
	// OnError, when set, is told of everything that did not stop Run:
	// malformed messages (as *MalformedError, already terminated), lost
	// connections and failed attempts to attach to the consumer, and
	// InProgress calls that could not be sent.
	OnError func(error)
}

// Subscriber is the imager's side: it reads its node's messages and hands
// the valid ones to a Handler.
type Subscriber struct {
	js      jetstream.JetStream
	cfg     SubscriberConfig
	handler Handler
}

// MalformedError describes a message on a node's subject that is not a
// valid DispatchMessage for that node. Such messages are terminated, so
// they are never delivered again.
type MalformedError struct {
	// Subject the message was read from.
	Subject string
	// StreamSeq is the message's sequence in the stream.
	StreamSeq uint64
	// Err says what is wrong; it wraps ErrInvalidMessage.
	Err error
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("malformed message %d on %s: %v", e.StreamSeq, e.Subject, e.Err)
}

func (e *MalformedError) Unwrap() error { return e.Err }

// NewSubscriber returns a Subscriber for cfg.NodeID; nothing is read until
// Run.
func NewSubscriber(js jetstream.JetStream, cfg SubscriberConfig, h Handler) (*Subscriber, error) {
	if err := ident.NodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	if h == nil {
		return nil, errors.New("wire: nil handler")
	}
	cfg.Dispatch = cfg.Dispatch.withDefaults()
	return &Subscriber{js: js, cfg: cfg, handler: h}, nil
}

// Run reads the node's messages until ctx ends, then returns nil. It creates
// the node's consumer if needed and waits, retrying, while the stream does
// not exist yet or NATS is away, resuming by itself after a reconnect. It
// returns an error only when the NATS connection is closed for good, so the
// connection should be made with nats.MaxReconnects(-1).
func (s *Subscriber) Run(ctx context.Context) error {
	pause := wait.Backoff{Min: retryMinWait, Max: subscribeMaxWait}
	for {
		attached, err := s.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if s.js.Conn().IsClosed() {
			return fmt.Errorf("subscribe node %s: %w", s.cfg.NodeID, nats.ErrConnectionClosed)
		}
		s.report(fmt.Errorf("subscribe node %s: %w", s.cfg.NodeID, err))
		if attached {
			pause.Reset()
		}
		if !pause.Wait(ctx) {
			return nil
		}
	}
}

// consume attaches to the consumer and hands over messages until that
// fails. attached reports whether it got as far as reading, so Run can tell
// a broken session from a failure to start one.
func (s *Subscriber) consume(ctx context.Context) (attached bool, err error) {
	cons, err := EnsureConsumer(ctx, s.js, s.cfg.NodeID, s.cfg.Dispatch)
	if err != nil {
		return false, err
	}
	ackWait := cons.CachedInfo().Config.AckWait
	it, err := cons.Messages(
		jetstream.PullMaxMessages(s.cfg.Dispatch.MaxAckPending),
		// Missing heartbeats while connected mean the consumer is gone
		// (deleted, or lost with a server's store): start over, which
		// creates it again.
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ConsumerName(s.cfg.NodeID), err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return true, fmt.Errorf("read %s: %w", ConsumerName(s.cfg.NodeID), err)
		}
		s.deliver(ctx, m, ackWait)
	}
}

// deliver decodes m and hands it to the handler, or terminates it.
func (s *Subscriber) deliver(ctx context.Context, m jetstream.Msg, ackWait time.Duration) {
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery; there is nothing to ack or terminate.
		s.report(fmt.Errorf("message on %s: %w", m.Subject(), err))
		return
	}
	dm, err := Decode(m.Data(), s.cfg.NodeID)
	if err != nil {
		if terr := m.TermWithReason("malformed dispatch message"); terr != nil {
			s.report(fmt.Errorf("terminate message %d: %w", meta.Sequence.Stream, terr))
		}
		s.report(&MalformedError{Subject: m.Subject(), StreamSeq: meta.Sequence.Stream, Err: err})
		return
	}
	s.handler(ctx, &Delivery{
		Message:      dm,
		NumDelivered: meta.NumDelivered,
		StreamSeq:    meta.Sequence.Stream,
		msg:          m,
		ackWait:      ackWait,
		report:       s.report,
	})
}

func (s *Subscriber) report(err error) {
	if s.cfg.OnError != nil {
		s.cfg.OnError(err)
	}
}
