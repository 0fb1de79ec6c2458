// Package leastpriv_test checks that the credentials deploy/ gives an
// imager let it do its job and nothing more: on a NATS server configured
// as deploy/nats-server.conf with the users imagefarm nats-config writes,
// and on a real MinIO with deploy/minio's imager policy.
package leastpriv_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// farmNATS starts a NATS server from deploy/nats-server.conf with the
// users of a controller and nodes n1 and n2, and returns it with the
// folder holding their credentials files.
func farmNATS(t *testing.T) (*server.Server, string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats-server.conf"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := natsauth.Generate(dir, []string{"n1", "n2"}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return testenv.NATSFromConfig(t, filepath.Join(dir, "nats-server.conf")), dir
}

// conn is a connection that records the permission violations the server
// reports to it.
type conn struct {
	*nats.Conn
	mu     sync.Mutex
	denied []string
}

// connect logs in with a credentials file, as the controller (node "") or
// an imager node does.
func connect(t *testing.T, srv *server.Server, creds, node string) *conn {
	t.Helper()
	auth, err := natsauth.ConnectOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{}
	// The server checks a bcrypt hash, slow under the race detector.
	opts := append(auth, nats.Timeout(30*time.Second), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			c.mu.Lock()
			c.denied = append(c.denied, err.Error())
			c.mu.Unlock()
		}
	}))
	if node != "" {
		opts = append(opts, nats.CustomInboxPrefix(natsauth.InboxPrefix(node)))
	}
	if c.Conn, err = nats.Connect(srv.ClientURL(), opts...); err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(c.Close)
	return c
}

// wasDenied waits until the server has reported that op ("publish" or
// "subscription") on subject was denied.
func (c *conn) wasDenied(t *testing.T, op, subject string) {
	t.Helper()
	want := strings.ToLower(op + ` to "` + subject + `"`)
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%s to %q reported as a permissions violation", op, subject), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.ContainsFunc(c.denied, func(d string) bool { return strings.Contains(strings.ToLower(d), want) })
	})
}

func newJS(t *testing.T, c *conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func assignment(node, task string) *imagefarmv1.TaskAssignment {
	return &imagefarmv1.TaskAssignment{
		TaskId: task, JobId: "job-1", NodeId: node, Epoch: 1,
		Drive:          &imagefarmv1.DriveIdentity{Id: "usb-1", Serial: "SN1", SizeBytes: 32 << 30},
		ManifestDigest: "sha256:" + strings.Repeat("ab", 32),
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestImagerNATSCredentials: the controller publishes with its
// credentials and node n1 reads and acks its own assignment with its own;
// with n1's credentials, publishing an assignment, reading node n2's
// consumer or subject, and managing streams are all refused, and n2's
// assignment is still there for n2.
func TestImagerNATSCredentials(t *testing.T) {
	srv, dir := farmNATS(t)
	ctl := connect(t, srv, filepath.Join(dir, natsauth.ControllerCredsFile), "")
	ctlJS := newJS(t, ctl)
	pub, err := wire.NewPublisher(t.Context(), ctlJS, wire.Config{})
	if err != nil {
		t.Fatalf("NewPublisher with the controller's credentials: %v", err)
	}
	if _, err := wire.EnsureConsumer(t.Context(), ctlJS, "n2", wire.Config{}); err != nil {
		t.Fatalf("EnsureConsumer(n2) with the controller's credentials: %v", err)
	}
	n1 := connect(t, srv, filepath.Join(dir, natsauth.ImagerCredsFile("n1")), "n1")
	n1JS := newJS(t, n1)

	t.Run("own assignments", func(t *testing.T) {
		got := make(chan *wire.Delivery, 1)
		sub, err := wire.NewSubscriber(n1JS, wire.SubscriberConfig{NodeID: "n1",
			OnError: func(err error) { t.Logf("n1 subscriber: %v", err) }},
			func(_ context.Context, d *wire.Delivery) { got <- d })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var g errgroup.Group
		g.Go(func() error { return sub.Run(ctx) })
		defer func() { cancel(); _ = g.Wait() }()
		if _, err := pub.Publish(t.Context(), assignment("n1", "t1")); err != nil {
			t.Fatalf("Publish with the controller's credentials: %v", err)
		}
		select {
		case d := <-got:
			if id, _ := d.Task(); id != "t1" {
				t.Fatalf("n1 got task %s, want t1", id)
			}
			if err := d.InProgress(); err != nil {
				t.Errorf("InProgress: %v", err)
			}
			if err := d.Ack(t.Context()); err != nil {
				t.Fatalf("Ack with n1's credentials: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("n1 got no assignment in 10s")
		}
		info, err := ctlJS.Consumer(t.Context(), wire.StreamName, wire.ConsumerName("n1"))
		if err != nil {
			t.Fatal(err)
		}
		if ci := info.CachedInfo(); ci.NumAckPending != 0 || ci.NumPending != 0 {
			t.Errorf("n1's consumer after the ack: %d unacked, %d pending, want 0 and 0", ci.NumAckPending, ci.NumPending)
		}
	})

	if _, err := pub.Publish(t.Context(), assignment("n2", "t2")); err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(&imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Assignment{
		Assignment: assignment("n1", "forged")}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("publish an assignment", func(t *testing.T) {
		if err := n1.Publish(wire.Subject("n1"), data); err != nil {
			t.Fatal(err)
		}
		n1.wasDenied(t, "publish", wire.Subject("n1"))
		if _, err := n1JS.Publish(shortCtx(t), wire.Subject("n2"), data); err == nil {
			t.Error("JetStream publish to n2's subject with n1's credentials succeeded")
		}
		n1.wasDenied(t, "publish", wire.Subject("n2"))
	})

	t.Run("read another node", func(t *testing.T) {
		next := "$JS.API.CONSUMER.MSG.NEXT." + wire.StreamName + "." + wire.ConsumerName("n2")
		if _, err := n1.Request(next, []byte(`{"batch":1}`), time.Second); err == nil {
			t.Error("fetch from n2's consumer with n1's credentials got an answer")
		}
		n1.wasDenied(t, "publish", next)
		if _, err := n1JS.Consumer(shortCtx(t), wire.StreamName, wire.ConsumerName("n2")); err == nil {
			t.Error("n2's consumer info with n1's credentials succeeded")
		}
		// A consumer of n1's name, or a new one, on n2's subject.
		for _, name := range []string{wire.ConsumerName("n1"), "spy"} {
			_, err := n1JS.CreateOrUpdateConsumer(shortCtx(t), wire.StreamName, jetstream.ConsumerConfig{
				Durable: name, FilterSubject: wire.Subject("n2"), AckPolicy: jetstream.AckExplicitPolicy})
			if err == nil {
				t.Errorf("consumer %s on n2's subject created with n1's credentials", name)
			}
		}
		for _, subj := range []string{wire.Subject("n2"), "_INBOX.>", natsauth.InboxPrefix("n2") + ".>"} {
			if _, err := n1.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			n1.wasDenied(t, "subscription", subj)
		}
	})

	t.Run("manage streams and KV", func(t *testing.T) {
		if err := n1JS.DeleteStream(shortCtx(t), wire.StreamName); err == nil {
			t.Error("DeleteStream with n1's credentials succeeded")
		}
		if _, err := n1JS.CreateKeyValue(shortCtx(t), jetstream.KeyValueConfig{Bucket: "spy"}); err == nil {
			t.Error("CreateKeyValue with n1's credentials succeeded")
		}
	})

	// Nothing n1 did reached the stream or took n2's assignment.
	st, err := ctlJS.Stream(t.Context(), wire.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("assignment stream holds %d messages, want 1 (n2's)", n)
	}
	c2, err := ctlJS.Consumer(t.Context(), wire.StreamName, wire.ConsumerName("n2"))
	if err != nil {
		t.Fatal(err)
	}
	if ci := c2.CachedInfo(); ci.NumPending != 1 || ci.Delivered.Consumer != 0 {
		t.Errorf("n2's consumer: %d pending, %d delivered, want 1 and 0", ci.NumPending, ci.Delivered.Consumer)
	}
}
