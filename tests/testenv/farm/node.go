package farm

import (
	"context"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/simimager"
)

// waitLong bounds a Node's waits for what should come; tests pass far
// below it.
const waitLong = 10 * time.Second

// Node is a simulated imager node that a test scripts message by
// message: it says Hello with its drives, takes its assignments and sends
// what the test tells it to, over its own status stream and NATS
// connection. It sends no heartbeat unless told to Beat.
type Node struct {
	*simimager.Imager
	t       testing.TB
	assigns chan *imagefarmv1.TaskAssignment
	// Replies are the controller's messages after the HelloAck, Acks
	// included; closed when the node stops, with Err saying why.
	Replies chan *imagefarmv1.ConnectResponse
	// Err is what the node stopped with, once Replies is closed.
	Err error
}

// Connect connects node to the controller in pool "bench" with drives,
// and runs it until the test ends.
func (f *Farm) Connect(t testing.TB, node string, drives ...*imagefarmv1.Drive) *Node {
	t.Helper()
	n := &Node{t: t, assigns: make(chan *imagefarmv1.TaskAssignment, 16), Replies: make(chan *imagefarmv1.ConnectResponse, 64)}
	n.Imager = simimager.New(simimager.Config{
		Hello:     &imagefarmv1.Hello{NodeId: node, InstanceId: "i-" + node, Pool: "bench", Drives: drives},
		Conn:      f.Dial(t, f.ClientCreds(t, node)),
		JetStream: f.JS,
		Deliver: func(ctx context.Context, d *wire.Delivery) {
			if a := d.Message.GetAssignment(); a != nil {
				n.assigns <- a
			}
			d.Ack(ctx)
		},
		Reply: func(m *imagefarmv1.ConnectResponse) { n.Replies <- m },
	})
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := n.Imager.Connect(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Err = n.Imager.Run(ctx)
		close(n.Replies)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// Send numbers m and sends it, failing the test if it cannot.
func (n *Node) Send(m *imagefarmv1.ConnectRequest) uint64 {
	n.t.Helper()
	seq, err := n.Imager.Send(m)
	if err != nil {
		n.t.Fatal(err)
	}
	return seq
}

// Assignment waits for the node's next assignment.
func (n *Node) Assignment() *imagefarmv1.TaskAssignment {
	n.t.Helper()
	select {
	case a := <-n.assigns:
		return a
	case <-time.After(waitLong):
		n.t.Fatalf("node %s: no assignment within %v", n.NodeID(), waitLong)
	}
	return nil
}

// Result reports a's task ended in state, having verified digest.
func (n *Node) Result(a *imagefarmv1.TaskAssignment, state imagefarmv1.TaskState, digest string) {
	n.t.Helper()
	n.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: state, VerifiedDigest: digest}}})
}

// UntilAck sends m and returns the StopTasks the controller answers with
// before it acknowledges m.
func (n *Node) UntilAck(m *imagefarmv1.ConnectRequest) []*imagefarmv1.StopTask {
	n.t.Helper()
	seq := n.Send(m)
	var stops []*imagefarmv1.StopTask
	deadline := time.After(waitLong)
	for {
		select {
		case r, ok := <-n.Replies:
			if !ok {
				n.t.Fatalf("node %s: stream ended before the Ack of seq %d: %v", n.NodeID(), seq, n.Err)
			}
			if st := r.GetStopTask(); st != nil {
				stops = append(stops, st)
			}
			if r.GetAck().GetSeq() == seq {
				return stops
			}
		case <-deadline:
			n.t.Fatalf("node %s: no Ack of seq %d within %v", n.NodeID(), seq, waitLong)
		}
	}
}

// Beat sends a heartbeat every 200ms until the test ends, like a healthy
// imager.
func (n *Node) Beat() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Imager.Beat(ctx, 200*time.Millisecond) }()
	n.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			n.t.Logf("node %s stopped beating: %v", n.NodeID(), err) // its stream may end first
		}
	})
}
