package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// minProgressEvery keeps a tiny AckWait from turning KeepInProgress into a
// busy loop.
const minProgressEvery = 50 * time.Millisecond

// Delivery is one delivery of a valid message to a node. Its methods may be
// called from any goroutine.
type Delivery struct {
	// Message is the decoded message; it holds an assignment for this node
	// or a cancel, checked as Decode does.
	Message *imagefarmv1.DispatchMessage
	// NumDelivered is 1 on the first delivery and grows with each
	// redelivery.
	NumDelivered uint64
	// StreamSeq identifies the message in the stream; every delivery of the
	// same message has the same StreamSeq.
	StreamSeq uint64

	msg     jetstream.Msg
	ackWait time.Duration
	report  func(error)
}

// Task returns the task id and epoch the message is about, whether it is
// an assignment or a cancel: the key under which an imager records what
// it has run.
func (d *Delivery) Task() (taskID string, epoch uint64) {
	if a := d.Message.GetAssignment(); a != nil {
		return a.GetTaskId(), a.GetEpoch()
	}
	c := d.Message.GetCancel()
	return c.GetTaskId(), c.GetEpoch()
}

// InProgress restarts the message's AckWait, so it is not delivered again
// while the node still works on it.
func (d *Delivery) InProgress() error {
	return d.wrap("mark in progress", d.msg.InProgress())
}

// Ack removes the message from the stream and waits until the server
// confirms it. When it fails the message may come again, and the node must
// recognize it as done.
func (d *Delivery) Ack(ctx context.Context) error {
	ctx, cancel := withAPITimeout(ctx)
	defer cancel()
	return d.wrap("ack", d.msg.DoubleAck(ctx))
}

// Nak asks for the message again after delay, e.g. for an assignment whose
// epoch is above the one the node knows, until its next HelloAck.
func (d *Delivery) Nak(delay time.Duration) error {
	return d.wrap("nak", d.msg.NakWithDelay(delay))
}

// Term removes the message from the stream for good without running it;
// reason is kept in the server's advisory.
func (d *Delivery) Term(reason string) error {
	return d.wrap("terminate", d.msg.TermWithReason(reason))
}

// KeepInProgress marks the message in progress at once and then every third
// of the consumer's AckWait, until ctx ends or the message is acked through
// this Delivery, and then returns nil. It blocks: run it in the errgroup of the work it covers
// and cancel its context before acking. A failed InProgress (NATS away) is
// reported through OnError and retried at the next tick.
func (d *Delivery) KeepInProgress(ctx context.Context) error {
	every := max(d.ackWait/3, minProgressEvery)
	t := time.NewTicker(every)
	defer t.Stop()
	for ctx.Err() == nil {
		err := d.msg.InProgress()
		if errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return nil
		}
		if err != nil {
			d.report(d.wrap("mark in progress", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	return nil
}

func (d *Delivery) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	taskID, epoch := d.Task()
	return fmt.Errorf("%s message %d (task %s epoch %d): %w", what, d.StreamSeq, taskID, epoch, err)
}
