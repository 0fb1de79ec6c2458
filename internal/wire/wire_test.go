package wire

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

func TestPublishReachesOnlyItsNode(t *testing.T) {
	js, p := setup(t, Config{})
	// Published before either node subscribes: the work queue keeps them.
	forA := assignment("bench-a", "task-a1", 3)
	forB := assignment("bench-b", "task-b1", 7)
	publish(t, p, forA)
	publish(t, p, forB)

	a := subscribe(t, js, "bench-a", Config{})
	b := subscribe(t, js, "bench-b", Config{})
	gotA, gotB := a.next(t), b.next(t)
	if !proto.Equal(gotA.Message.GetAssignment(), forA) {
		t.Errorf("bench-a received %v, want %v", gotA.Message, forA)
	}
	if !proto.Equal(gotB.Message.GetAssignment(), forB) {
		t.Errorf("bench-b received %v, want %v", gotB.Message, forB)
	}
	if gotA.NumDelivered != 1 {
		t.Errorf("NumDelivered = %d, want 1", gotA.NumDelivered)
	}
	// A later message for bench-a only.
	later := assignment("bench-a", "task-a2", 3)
	publish(t, p, later)
	if got := a.next(t); !proto.Equal(got.Message.GetAssignment(), later) {
		t.Errorf("bench-a received %v, want %v", got.Message, later)
	}
	b.noneUntil(t, p, 1) // published after: later was not bench-b's
}

func TestDuplicatePublishStoredOnce(t *testing.T) {
	js, p := setup(t, Config{})
	a := assignment("bench-a", "task-1", 2)
	if ack := publish(t, p, a); ack.Duplicate {
		t.Errorf("first Publish: Duplicate = true, want false")
	}
	again := publish(t, p, proto.Clone(a).(*imagefarmv1.TaskAssignment))
	if !again.Duplicate {
		t.Errorf("second Publish of the same task and epoch: Duplicate = false, want true")
	}
	if got := streamMsgs(t, js); got != 1 {
		t.Fatalf("stream holds %d messages after a republish, want 1", got)
	}
	// The same task under a new epoch is a new assignment, and a cancel
	// has its own id.
	publish(t, p, assignment("bench-a", "task-1", 3))
	if _, err := p.Cancel(t.Context(), "bench-a", cancelOf(a)); err != nil {
		t.Fatalf("Cancel() = %v", err)
	}
	if got := streamMsgs(t, js); got != 3 {
		t.Fatalf("stream holds %d messages, want 3", got)
	}

	n := subscribe(t, js, "bench-a", Config{})
	for range 3 {
		if err := n.next(t).Ack(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	n.noneUntil(t, p, 1) // published after: the republish was not stored
	// Acked messages leave a work-queue stream.
	testenv.Eventually(t, waitLong, "stream empty after acks", func() bool { return streamMsgs(t, js) == 0 })
}

func TestCancelArrivesAfterItsAssignment(t *testing.T) {
	js, p := setup(t, Config{})
	n := subscribe(t, js, "bench-a", Config{})
	a := assignment("bench-a", "task-1", 5)
	publish(t, p, a)
	if _, err := p.Cancel(t.Context(), "bench-a", cancelOf(a)); err != nil {
		t.Fatalf("Cancel() = %v", err)
	}
	first, second := n.next(t), n.next(t)
	if first.Message.GetAssignment() == nil {
		t.Fatalf("first delivery = %v, want the assignment", first.Message)
	}
	// The handler got the cancel while the assignment is still unacked,
	// as it will be while its drive is written.
	if !proto.Equal(second.Message.GetCancel(), cancelOf(a)) {
		t.Fatalf("second delivery = %v, want %v", second.Message, cancelOf(a))
	}
	if id, epoch := second.Task(); id != "task-1" || epoch != 5 {
		t.Errorf("Task() = %s, %d, want task-1, 5", id, epoch)
	}
}

func TestSubscriberWaitsForStream(t *testing.T) {
	_, nc := testenv.NATS(t)
	js := newJetStream(t, nc)
	n := subscribe(t, js, "bench-a", Config{})
	// The imager came up before the controller made the stream.
	select {
	case err := <-n.errs:
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("OnError(%v), want ErrStreamNotFound", err)
		}
	case <-time.After(waitLong):
		t.Fatal("no error reported while the stream is missing")
	}
	p, err := NewPublisher(t.Context(), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	a := assignment("bench-a", "task-1", 1)
	publish(t, p, a)
	if got := n.next(t); !proto.Equal(got.Message.GetAssignment(), a) {
		t.Errorf("received %v, want %v", got.Message, a)
	}
}

func TestEnsureConsumerFromBothSides(t *testing.T) {
	js, _ := setup(t, Config{})
	cfg := Config{AckWait: 7 * time.Second, MaxAckPending: 9}
	for range 2 { // the controller and the imager, in either order
		if _, err := EnsureConsumer(t.Context(), js, "bench-a", cfg); err != nil {
			t.Fatalf("EnsureConsumer() = %v", err)
		}
	}
	c, err := js.Consumer(t.Context(), StreamName, "imager-bench-a")
	if err != nil {
		t.Fatal(err)
	}
	got := c.CachedInfo().Config
	if got.FilterSubject != "imagefarm.assign.bench-a" || got.AckWait != 7*time.Second ||
		got.MaxAckPending != 9 || got.AckPolicy != jetstream.AckExplicitPolicy || got.MaxDeliver != -1 {
		t.Errorf("consumer config = %+v", got)
	}
}

func TestPublishRefusesInvalid(t *testing.T) {
	js, p := setup(t, Config{})
	withNode := func(id string) *imagefarmv1.TaskAssignment { return assignment(id, "task-1", 1) }
	tests := []struct {
		name string
		a    *imagefarmv1.TaskAssignment
		want error
	}{
		{"nil", nil, ident.ErrInvalid},
		{"no node", withNode(""), ident.ErrInvalid},
		{"dot", withNode("bench.a"), ident.ErrInvalid},
		{"star", withNode("bench*"), ident.ErrInvalid},
		{"gt", withNode("bench>"), ident.ErrInvalid},
		{"space", withNode("bench a"), ident.ErrInvalid},
		{"slash", withNode("../etc"), ident.ErrInvalid},
		{"non-ascii", withNode("bänk"), ident.ErrInvalid},
		{"too long", withNode(strings.Repeat("n", 65)), ident.ErrInvalid},
		{"no task", assignment("bench-a", "", 1), ErrInvalidMessage},
		{"task with newline", assignment("bench-a", "t\r\nX: y", 1), ErrInvalidMessage},
		{"epoch 0", assignment("bench-a", "task-1", 0), ErrInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.Publish(t.Context(), tt.a); !errors.Is(err, tt.want) {
				t.Errorf("Publish() = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := p.Cancel(t.Context(), "a.b", &imagefarmv1.TaskCancel{TaskId: "t", Epoch: 1}); !errors.Is(err, ident.ErrInvalid) {
		t.Errorf("Cancel(node a.b) = %v, want %v", err, ident.ErrInvalid)
	}
	if _, err := p.Cancel(t.Context(), "bench-a", &imagefarmv1.TaskCancel{TaskId: "t"}); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("Cancel(epoch 0) = %v, want %v", err, ErrInvalidMessage)
	}
	if got := streamMsgs(t, js); got != 0 {
		t.Errorf("stream holds %d messages after refused publishes, want 0", got)
	}
}
