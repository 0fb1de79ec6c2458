package wire

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

const (
	// publishAttemptTimeout bounds one publish so that one sent into a
	// dead connection is retried rather than waited on for ever.
	publishAttemptTimeout = 5 * time.Second
	retryMinWait          = 100 * time.Millisecond
	retryMaxWait          = 2 * time.Second
)

// Publisher is the controller's side: it puts assignments and cancels on
// the nodes' subjects.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher creates or updates the stream to cfg and returns a Publisher
// for it.
func NewPublisher(ctx context.Context, js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		return nil, err
	}
	return &Publisher{js: js}, nil
}

// Publish puts an assignment on its node's subject with message id
// "<task_id>/<epoch>". It retries while NATS is unreachable until ctx ends;
// this is safe because a message stored by an attempt whose answer was lost
// is dropped as a duplicate (PubAck.Duplicate) when retried within the
// duplicate window. An invalid assignment is refused with an error that
// wraps ident.ErrInvalid (its node id) or ErrInvalidMessage, and never
// retried.
func (p *Publisher) Publish(ctx context.Context, a *imagefarmv1.TaskAssignment) (*jetstream.PubAck, error) {
	if err := ident.NodeID(a.GetNodeId()); err != nil {
		return nil, fmt.Errorf("publish assignment: %w", err)
	}
	if err := checkAssignment(a, a.GetNodeId()); err != nil {
		return nil, fmt.Errorf("publish assignment: %w", err)
	}
	m := &imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Assignment{Assignment: a}}
	return p.publish(ctx, a.GetNodeId(), assignmentMsgID(a.GetTaskId(), a.GetEpoch()), m)
}

// Cancel puts a cancel on nodeID's subject, behind the assignment it
// cancels, with message id "<task_id>/<epoch>/cancel". TaskCancel does not
// name its node, so the caller passes the node the task was assigned to.
// Retries are as for Publish.
func (p *Publisher) Cancel(ctx context.Context, nodeID string, c *imagefarmv1.TaskCancel) (*jetstream.PubAck, error) {
	if err := ident.NodeID(nodeID); err != nil {
		return nil, fmt.Errorf("publish cancel: %w", err)
	}
	if err := checkCancel(c); err != nil {
		return nil, fmt.Errorf("publish cancel: %w", err)
	}
	m := &imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Cancel{Cancel: c}}
	return p.publish(ctx, nodeID, cancelMsgID(c.GetTaskId(), c.GetEpoch()), m)
}

func (p *Publisher) publish(ctx context.Context, nodeID, msgID string, m *imagefarmv1.DispatchMessage) (*jetstream.PubAck, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", msgID, err)
	}
	subject := Subject(nodeID)
	pause := wait.Backoff{Min: retryMinWait, Max: retryMaxWait}
	for {
		ack, err := p.publishOnce(ctx, subject, msgID, data)
		if err == nil {
			return ack, nil
		}
		if !retryable(err) {
			return nil, fmt.Errorf("publish %s on %s: %w", msgID, subject, err)
		}
		if !pause.Wait(ctx) {
			return nil, fmt.Errorf("publish %s on %s: %w: %w", msgID, subject, err, context.Cause(ctx))
		}
		if errors.Is(err, nats.ErrConnectionReconnecting) {
			// Nothing was sent: look at the connection at a steady pace,
			// so that the message goes out as soon as NATS is back.
			pause.Reset()
		}
	}
}

func (p *Publisher) publishOnce(ctx context.Context, subject, msgID string, data []byte) (*jetstream.PubAck, error) {
	nc := p.js.Conn()
	// The answer to a request in flight when the connection drops is lost:
	// give up on it then rather than at the timeout.
	dropped := nc.StatusChanged(nats.RECONNECTING)
	defer nc.RemoveStatusListener(dropped)
	if nc.IsReconnecting() {
		// A request made now would delay in the client's reconnect buffer,
		// where it can be lost, and would be waited on for a whole attempt.
		return nil, nats.ErrConnectionReconnecting
	}
	ctx, cancel := context.WithTimeout(ctx, publishAttemptTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-dropped:
			cancel()
		case <-ctx.Done():
		}
	})
	// WithExpectStream turns a subject that some other stream captures into
	// an error instead of a message no imager reads.
	ack, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data},
		jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamName))
	cancel()
	wg.Wait()
	return ack, err
}

// retryable tells a publish that may succeed later (no connection, no
// JetStream yet after a restart, a lost answer) from one the server refused.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500
	}
	return !errors.Is(err, nats.ErrConnectionClosed) &&
		!errors.Is(err, nats.ErrMaxPayload) &&
		!errors.Is(err, nats.ErrBadSubject)
}
