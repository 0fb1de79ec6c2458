package wire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// restartable is a NATS server on a fixed port and store, so that when it
// is started again it is the same server to its clients. testenv.NATS picks
// a new port each time, which a restart cannot do.
type restartable struct {
	port  int
	store string
	srv   *server.Server
}

func newRestartable(t *testing.T) *restartable {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{port: port, store: t.TempDir()}
	r.start(t)
	return r
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: r.port, JetStream: true, StoreDir: r.store, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready after 10s")
	}
	t.Cleanup(srv.Shutdown)
	r.srv = srv
}

func (r *restartable) stop() {
	r.srv.Shutdown()
	r.srv.WaitForShutdown()
}

// connect connects the way an imager or controller should: reconnecting
// for ever.
func (r *restartable) connect(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(r.srv.ClientURL(), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return newJetStream(t, nc)
}

func TestSurvivesServerRestart(t *testing.T) {
	r := newRestartable(t)
	js := r.connect(t)
	p, err := NewPublisher(t.Context(), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	n := subscribe(t, js, "bench-a", Config{})
	publish(t, p, assignment("bench-a", "task-1", 1))
	if err := n.next(t).Ack(t.Context()); err != nil {
		t.Fatal(err)
	}

	r.stop()
	// Published while NATS is down: Publish keeps trying until it is back.
	during := assignment("bench-a", "task-2", 1)
	published := make(chan error, 1)
	go func() {
		_, err := p.Publish(t.Context(), during)
		published <- err
	}()
	time.Sleep(time.Second)
	restarted := time.Now()
	r.start(t)
	if err := <-published; err != nil {
		t.Fatalf("Publish() across the restart = %v", err)
	}
	if got := n.next(t); !proto.Equal(got.Message.GetAssignment(), during) {
		t.Fatalf("after restart received %v, want %v", got.Message, during)
	}
	t.Logf("published and delivered %v after the server came back", time.Since(restarted).Round(time.Millisecond))

	after := assignment("bench-a", "task-3", 1)
	publish(t, p, after)
	if got := n.next(t); !proto.Equal(got.Message.GetAssignment(), after) {
		t.Fatalf("received %v, want %v", got.Message, after)
	}
	n.noneUntil(t, p, 1) // task-1 was acked before the restart
}

func TestPublishGivesUpWhenContextEnds(t *testing.T) {
	srv, nc := testenv.NATS(t)
	p, err := NewPublisher(t.Context(), newJetStream(t, nc), Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	// With NATS down Publish retries for good: only its context's end can
	// make it return, so returning the context's error is giving up on it.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	published := make(chan error, 1)
	go func() {
		_, err := p.Publish(ctx, assignment("bench-a", "task-1", 1))
		published <- err
	}()
	select {
	case err := <-published:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish() with NATS down = %v, want %v", err, context.DeadlineExceeded)
		}
		t.Logf("Publish() gave up %v after it began, its context ending after 500ms", time.Since(start).Round(time.Millisecond))
	case <-time.After(waitLong):
		t.Fatalf("Publish() with NATS down still retrying %v after its context ended", waitLong)
	}
}

func TestResumesAfterConsumerDeleted(t *testing.T) {
	js, p := setup(t, Config{})
	n := subscribe(t, js, "bench-a", Config{})
	publish(t, p, assignment("bench-a", "task-1", 1))
	if err := n.next(t).Ack(t.Context()); err != nil {
		t.Fatal(err)
	}
	// An operator deletes the consumer: the subscriber makes it again.
	if err := js.DeleteConsumer(t.Context(), StreamName, ConsumerName("bench-a")); err != nil {
		t.Fatal(err)
	}
	later := assignment("bench-a", "task-2", 1)
	publish(t, p, later)
	if got := n.next(t); !proto.Equal(got.Message.GetAssignment(), later) {
		t.Fatalf("received %v, want %v", got.Message, later)
	}
}
