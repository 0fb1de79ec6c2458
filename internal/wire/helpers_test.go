package wire

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// waitLong bounds every wait for something that should happen; tests pass
// far below it and it only matters when they fail.
const waitLong = 15 * time.Second

// setup starts an embedded NATS server and a Publisher on it.
func setup(t *testing.T, cfg Config) (jetstream.JetStream, *Publisher) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js := newJetStream(t, nc)
	p, err := NewPublisher(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("NewPublisher() = %v", err)
	}
	return js, p
}

func newJetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New() = %v", err)
	}
	return js
}

// node is a running Subscriber whose handler and OnError feed channels.
type node struct {
	id         string
	deliveries chan *Delivery
	errs       chan error
}

// subscribe runs a Subscriber for nodeID until the test ends and checks
// that Run returns nil once stopped.
func subscribe(t *testing.T, js jetstream.JetStream, nodeID string, cfg Config) *node {
	t.Helper()
	n := &node{id: nodeID, deliveries: make(chan *Delivery, 100), errs: make(chan error, 100)}
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := NewSubscriber(js, SubscriberConfig{
		NodeID:   nodeID,
		Dispatch: cfg,
		OnError: func(err error) {
			select {
			case n.errs <- err:
			default: // a test that floods errors fails on what it checks
			}
		},
	}, func(ctx context.Context, d *Delivery) {
		select {
		case n.deliveries <- d:
		case <-ctx.Done():
		}
	})
	if err != nil {
		t.Fatalf("NewSubscriber(%q) = %v", nodeID, err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run(%q) after cancel = %v, want nil", nodeID, err)
		}
	})
	return n
}

// next returns the node's next delivery or fails the test.
func (n *node) next(t *testing.T) *Delivery {
	t.Helper()
	select {
	case d := <-n.deliveries:
		return d
	case <-time.After(waitLong):
		t.Fatalf("no delivery within %v", waitLong)
		return nil
	}
}

// noneUntil proves that nothing else is delivered to the node: it
// publishes a sentinel assignment and takes its deliveries, unacked, until
// the times-th (each an AckWait after the one before), then acks it. A
// message that should not come (again) would come before the sentinel's
// last delivery, and fails the test.
func (n *node) noneUntil(t *testing.T, p *Publisher, times uint64) {
	t.Helper()
	sentinel := assignment(n.id, fmt.Sprintf("sentinel-%d", sentinels.Add(1)), 1)
	publish(t, p, sentinel)
	for {
		d := n.next(t)
		if !proto.Equal(d.Message.GetAssignment(), sentinel) {
			id, epoch := d.Task()
			t.Fatalf("unexpected delivery of task %s epoch %d (delivery %d) before the sentinel", id, epoch, d.NumDelivered)
		}
		if d.NumDelivered >= times {
			if err := d.Ack(t.Context()); err != nil {
				t.Fatalf("Ack(sentinel) = %v", err)
			}
			return
		}
	}
}

// sentinels numbers the sentinel assignments.
var sentinels atomic.Int64

func assignment(nodeID, taskID string, epoch uint64) *imagefarmv1.TaskAssignment {
	return &imagefarmv1.TaskAssignment{
		TaskId: taskID,
		JobId:  "job-1",
		NodeId: nodeID,
		Epoch:  epoch,
		Drive: &imagefarmv1.DriveIdentity{
			Id: "usb-1", Serial: "SN123", SizeBytes: 32 << 30, Model: "DataTraveler",
		},
		ManifestDigest: "sha256:" + strings.Repeat("ab", 32),
		ImageRef:       "universal:stable",
		AssignTime:     timestamppb.New(time.Unix(1_700_000_000, 0)),
	}
}

func cancelOf(a *imagefarmv1.TaskAssignment) *imagefarmv1.TaskCancel {
	return &imagefarmv1.TaskCancel{
		TaskId: a.GetTaskId(), JobId: a.GetJobId(), Epoch: a.GetEpoch(),
		Reason: imagefarmv1.StopReason_STOP_REASON_CANCELED,
	}
}

func publish(t *testing.T, p *Publisher, a *imagefarmv1.TaskAssignment) *jetstream.PubAck {
	t.Helper()
	ack, err := p.Publish(t.Context(), a)
	if err != nil {
		t.Fatalf("Publish(%s) = %v", a.GetTaskId(), err)
	}
	return ack
}

// streamMsgs is how many messages the stream holds now.
func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), StreamName)
	if err != nil {
		t.Fatalf("Stream() = %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("Stream.Info() = %v", err)
	}
	return info.State.Msgs
}
