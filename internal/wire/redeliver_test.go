package wire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// shortAck makes an unacked message come back within a second.
var shortAck = Config{AckWait: time.Second}

func TestRedeliveryAfterAckWait(t *testing.T) {
	js, p := setup(t, shortAck)
	n := subscribe(t, js, "bench-a", shortAck)
	// Timed from before the publish: the server delivers after it, so a
	// redelivery after AckWait comes at least that long after this,
	// however late the test reads the first delivery (timed from that
	// read, a loaded machine made the wait look short).
	start := time.Now()
	publish(t, p, assignment("bench-a", "task-1", 1))

	first := n.next(t)
	second := n.next(t) // never acked, so it comes again
	if waited := time.Since(start); waited < shortAck.AckWait/2 {
		t.Errorf("redelivered %v after the publish, want about AckWait (%v)", waited, shortAck.AckWait)
	}
	if first.NumDelivered != 1 || second.NumDelivered != 2 {
		t.Errorf("NumDelivered = %d then %d, want 1 then 2", first.NumDelivered, second.NumDelivered)
	}
	if second.StreamSeq != first.StreamSeq {
		t.Errorf("StreamSeq = %d then %d, want the same message", first.StreamSeq, second.StreamSeq)
	}
	// Acks go by stream sequence: an imager that acks through the delivery
	// it started the task with settles every delivery of it.
	if err := first.Ack(t.Context()); err != nil {
		t.Fatalf("Ack(first delivery) = %v", err)
	}
	n.noneUntil(t, p, 2) // an AckWait after the sentinel's first delivery
	testenv.Eventually(t, waitLong, "stream empty after acks", func() bool { return streamMsgs(t, js) == 0 })
}

func TestInProgressPreventsRedelivery(t *testing.T) {
	js, p := setup(t, shortAck)
	n := subscribe(t, js, "bench-a", shortAck)
	publish(t, p, assignment("bench-a", "task-1", 1))
	d := n.next(t)

	// A "write" three and a half times as long as AckWait, kept in
	// progress the way the agent does it.
	work, stop := context.WithCancel(t.Context())
	var g errgroup.Group
	g.Go(func() error { return d.KeepInProgress(work) })
	t.Cleanup(func() { stop(); _ = g.Wait() })
	n.noneUntil(t, p, 4) // three AckWaits
	stop()
	if err := g.Wait(); err != nil {
		t.Fatalf("KeepInProgress() = %v", err)
	}
	if err := d.Ack(t.Context()); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	n.noneUntil(t, p, 2)
	testenv.Eventually(t, waitLong, "stream empty after acks", func() bool { return streamMsgs(t, js) == 0 })
}

func TestKeepInProgressEndsWhenAcked(t *testing.T) {
	js, p := setup(t, shortAck)
	n := subscribe(t, js, "bench-a", shortAck)
	publish(t, p, assignment("bench-a", "task-1", 1))
	d := n.next(t)
	if err := d.Ack(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.KeepInProgress(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("KeepInProgress() after Ack = %v, want nil", err)
		}
	case <-time.After(waitLong):
		t.Fatal("KeepInProgress did not return for an acked message")
	}
}

func TestNakRedeliversAfterDelay(t *testing.T) {
	js, p := setup(t, Config{})
	n := subscribe(t, js, "bench-a", Config{})
	publish(t, p, assignment("bench-a", "task-1", 9))
	d := n.next(t)
	start := time.Now()
	if err := d.Nak(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := n.next(t)
	if waited := time.Since(start); waited < 400*time.Millisecond || again.NumDelivered != 2 {
		t.Errorf("after Nak(500ms): redelivered after %v with NumDelivered %d, want ≥500ms and 2",
			waited, again.NumDelivered)
	}
}

func TestMalformedMessagesAreTerminated(t *testing.T) {
	js, p := setup(t, shortAck)
	n := subscribe(t, js, "bench-a", shortAck)
	otherNode, _ := proto.Marshal(&imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Assignment{
		Assignment: assignment("bench-b", "task-x", 1)}})
	noTask, _ := proto.Marshal(&imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Assignment{
		Assignment: assignment("bench-a", "", 1)}})
	// Written around the Publisher, the way a bug or a stranger would.
	for _, data := range [][]byte{[]byte("{\"task\": \"not protobuf\"}"), otherNode, noTask, nil} {
		if _, err := js.Publish(t.Context(), Subject("bench-a"), data); err != nil {
			t.Fatal(err)
		}
	}
	valid := assignment("bench-a", "task-ok", 1)
	publish(t, p, valid)

	got := n.next(t)
	if !proto.Equal(got.Message.GetAssignment(), valid) {
		t.Fatalf("handler got %v, want only the valid assignment", got.Message)
	}
	if err := got.Ack(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		var merr *MalformedError
		select {
		case err := <-n.errs:
			if !errors.As(err, &merr) || !errors.Is(err, ErrInvalidMessage) || merr.Subject != "imagefarm.assign.bench-a" {
				t.Errorf("OnError(%v), want a *MalformedError on bench-a's subject", err)
			}
		case <-time.After(waitLong):
			t.Fatalf("%d malformed messages reported, want 4", i)
		}
	}
	// Terminated, not left to come back after AckWait.
	n.noneUntil(t, p, 2)
	testenv.Eventually(t, waitLong, "stream empty", func() bool { return streamMsgs(t, js) == 0 })
}

func TestRunStopsWhenConnectionCloses(t *testing.T) {
	js, _ := setup(t, Config{})
	sub, err := NewSubscriber(js, SubscriberConfig{NodeID: "bench-a"}, func(context.Context, *Delivery) {})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(t.Context()) }()
	time.Sleep(200 * time.Millisecond) // let it attach
	js.Conn().Close()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("Run() after Close = %v, want %v", err, nats.ErrConnectionClosed)
		}
	case <-time.After(waitLong):
		t.Fatal("Run did not return after the connection closed")
	}
}
