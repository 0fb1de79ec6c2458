package imager_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// waitLong bounds every wait for something that should happen, so that a
// test that fails ends instead of hanging; tests pass far below it, on two
// loaded cores as well, and it only matters when they fail. No test
// asserts a speed (that is for benchmarks).
const waitLong = time.Minute

const testNode = "bench-1"

// fakeController is a test ImagerService: it records what the agent sends,
// answers Hello with its epoch and acks every numbered message unless
// holdAcks is set. Tests read it under mu.
type fakeController struct {
	imagefarmv1.UnimplementedImagerServiceServer
	epoch    uint64
	lastSeq  uint64      // what HelloAck says was applied
	holdAcks atomic.Bool // ack nothing

	mu     sync.Mutex
	sendMu sync.Mutex
	got    []*imagefarmv1.ConnectRequest
	stream imagefarmv1.ImagerService_ConnectServer
}

func (c *fakeController) Connect(stream imagefarmv1.ImagerService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil || first.GetHello() == nil {
		return fmt.Errorf("want hello first, got %v, %v", first, err)
	}
	c.mu.Lock()
	c.got = append(c.got, first)
	c.stream = stream
	last := c.lastSeq
	c.mu.Unlock()
	if err := c.send(stream, &imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_HelloAck{HelloAck: &imagefarmv1.HelloAck{
		Epoch: c.epoch, LastSeq: last, HeartbeatInterval: durationpb.New(200 * time.Millisecond), HeartbeatTtl: durationpb.New(5 * time.Second),
	}}}); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		c.mu.Lock()
		c.got = append(c.got, m)
		c.mu.Unlock()
		if m.GetSeq() > 0 && !c.holdAcks.Load() {
			if err := c.send(stream, &imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_Ack{Ack: &imagefarmv1.Ack{Seq: m.GetSeq()}}}); err != nil {
				return err
			}
		}
	}
}

func (c *fakeController) send(stream imagefarmv1.ImagerService_ConnectServer, m *imagefarmv1.ConnectResponse) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return stream.Send(m)
}

// stopTask sends StopTask on the current stream.
func (c *fakeController) stopTask(t *testing.T, taskID string, epoch uint64) {
	t.Helper()
	c.mu.Lock()
	s := c.stream
	c.mu.Unlock()
	err := c.send(s, &imagefarmv1.ConnectResponse{Body: &imagefarmv1.ConnectResponse_StopTask{StopTask: &imagefarmv1.StopTask{
		TaskId: taskID, Epoch: epoch, Reason: imagefarmv1.StopReason_STOP_REASON_UNKNOWN_TASK, Message: "test"}}})
	if err != nil {
		t.Fatalf("send StopTask: %v", err)
	}
}

// received returns the messages received so far that match keep.
func (c *fakeController) received(keep func(*imagefarmv1.ConnectRequest) bool) []*imagefarmv1.ConnectRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*imagefarmv1.ConnectRequest
	for _, m := range c.got {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func (c *fakeController) hellos() []*imagefarmv1.Hello {
	var hs []*imagefarmv1.Hello
	for _, m := range c.received(func(m *imagefarmv1.ConnectRequest) bool { return m.GetHello() != nil }) {
		hs = append(hs, m.GetHello())
	}
	return hs
}

// results are the TaskResult messages received for a task.
func (c *fakeController) results(taskID string) []*imagefarmv1.ConnectRequest {
	return c.received(func(m *imagefarmv1.ConnectRequest) bool { return m.GetTaskResult().GetTaskId() == taskID })
}

// progress are the TaskProgress reports received for a task.
func (c *fakeController) progress(taskID string) []*imagefarmv1.TaskProgress {
	var ps []*imagefarmv1.TaskProgress
	for _, m := range c.received(func(m *imagefarmv1.ConnectRequest) bool { return m.GetTaskProgress().GetTaskId() == taskID }) {
		ps = append(ps, m.GetTaskProgress())
	}
	return ps
}

// heartbeats is how many heartbeats were received.
func (c *fakeController) heartbeats() int {
	return len(c.received(func(m *imagefarmv1.ConnectRequest) bool { return m.GetHeartbeat() != nil }))
}

// waitHeartbeats waits for n more heartbeats. The agent sends what its
// outbox holds before each heartbeat, so a message queued before the call
// arrives before the second of them: a test waits for them to prove that
// no such message was sent.
func (c *fakeController) waitHeartbeats(t *testing.T, n int) {
	t.Helper()
	want := c.heartbeats() + n
	testenv.Eventually(t, waitLong, fmt.Sprintf("%d more heartbeats", n), func() bool { return c.heartbeats() >= want })
}

// result waits for the first result of a task.
func (c *fakeController) result(t *testing.T, taskID string) *imagefarmv1.TaskResult {
	t.Helper()
	testenv.Eventually(t, waitLong, "result of "+taskID, func() bool { return len(c.results(taskID)) > 0 })
	return c.results(taskID)[0].GetTaskResult()
}

// controllerServer serves a fakeController on a loopback address, with
// TLS, until stopped; a new one can take the same address.
type controllerServer struct {
	addr string
	tls  *tls.Config
	srv  *grpc.Server
	done chan struct{}
}

func serveController(t *testing.T, addr string, tlsCfg *tls.Config, c *fakeController) *controllerServer {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg))) // default keepalive enforcement, as the controller has
	imagefarmv1.RegisterImagerServiceServer(srv, c)
	s := &controllerServer{addr: lis.Addr().String(), tls: tlsCfg, srv: srv, done: make(chan struct{})}
	go func() { defer close(s.done); srv.Serve(lis) }()
	t.Cleanup(s.stop)
	return s
}

func (s *controllerServer) stop() {
	s.srv.Stop()
	<-s.done
}

// rig is one imager agent under test, with its drives, on a farm whose
// controller is a fake that records what the agent sends and answers as
// the test says.
type rig struct {
	*farm.Farm
	b      *bench
	pub    *wire.Publisher
	ctl    *fakeController
	srv    *controllerServer
	drives []drive.Drive
	agent  *farm.Imager
	logs   lockedBuffer // the agent's log
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newRig starts an agent over n virtual drives of size bytes, filled with
// 0xEE so that nothing verifies by accident. cat, when not nil, replaces
// the bench's catalog as the agent's: a slow or gated store, which the
// agent then writes from while it fetches (WriteWhileFetching), so that a
// test can act mid-write.
func newRig(t *testing.T, b *bench, n int, size int64, cat *catalog.Catalog) *rig {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("d%d.img", i)), bytes.Repeat([]byte{0xEE}, int(size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dcfg := drive.Config{VirtualDir: dir}
	drives, err := drive.Discover(dcfg)
	drives = slices.DeleteFunc(drives, drive.Drive.IsBlock) // the host's own disks
	if err != nil || len(drives) != n {
		t.Fatalf("Discover() = %d drives, %v; want %d", len(drives), err, n)
	}
	return startRig(t, b, dcfg, drives, cat)
}

// startRig starts an agent with the node config dcfg; drives are the
// ones the rig's assignments name.
func startRig(t *testing.T, b *bench, dcfg drive.Config, drives []drive.Drive, cat *catalog.Catalog) *rig {
	t.Helper()
	f := &rig{Farm: farm.Start(t, farm.Options{NoController: true}), b: b, ctl: &fakeController{epoch: 3}, drives: drives}
	pub, err := wire.NewPublisher(t.Context(), f.JS, wire.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.pub = pub
	f.srv = serveController(t, "127.0.0.1:0", f.PKI.ServerTLS(t), f.ctl)
	whileFetching := cat != nil
	if cat == nil {
		cat = b.cat
	}
	f.agent = f.StartImager(t, imager.AgentConfig{
		NodeID: testNode, Pool: "usb", Labels: map[string]string{"site": "depot"}, Version: "test",
		Controller: f.srv.addr, Catalog: cat, Drives: dcfg, AllowUnsigned: true, WriteWhileFetching: whileFetching,
		Log: slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &f.logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	testenv.Eventually(t, waitLong, "hello", func() bool { return len(f.ctl.hellos()) > 0 })
	return f
}

// restartController stops the controller and serves c on the same address.
func (f *rig) restartController(t *testing.T, c *fakeController) {
	t.Helper()
	f.srv.stop()
	f.ctl = c
	f.srv = serveController(t, f.srv.addr, f.srv.tls, c)
}

// assignment is a task writing the bench image to the farm's drive i.
func (f *rig) assignment(taskID string, i int, epoch uint64) *imagefarmv1.TaskAssignment {
	d := f.drives[i]
	return &imagefarmv1.TaskAssignment{
		TaskId: taskID, JobId: "job-1", NodeId: testNode, Epoch: epoch, ManifestDigest: f.b.digest, ImageRef: "img:1",
		Drive: &imagefarmv1.DriveIdentity{Id: d.ID, Serial: d.Serial, SizeBytes: uint64(d.Size), Model: d.Model},
	}
}

func (f *rig) publish(t *testing.T, as ...*imagefarmv1.TaskAssignment) {
	t.Helper()
	for _, a := range as {
		if _, err := f.pub.Publish(t.Context(), a); err != nil {
			t.Fatalf("Publish(%s) = %v", a.GetTaskId(), err)
		}
	}
}

// publishAgain puts an assignment on the stream once more without a
// message id, as a publish after the duplicate window would.
func (f *rig) publishAgain(t *testing.T, a *imagefarmv1.TaskAssignment) {
	t.Helper()
	data, err := proto.Marshal(&imagefarmv1.DispatchMessage{Body: &imagefarmv1.DispatchMessage_Assignment{Assignment: a}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.JS.Publish(t.Context(), wire.Subject(testNode), data); err != nil {
		t.Fatalf("publish %s again: %v", a.GetTaskId(), err)
	}
}

// streamMsgs is how many messages the dispatch stream holds: those not
// acked or terminated yet.
func (f *rig) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := f.JS.Stream(t.Context(), wire.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (f *rig) drained(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, waitLong, "dispatch stream empty", func() bool { return f.streamMsgs(t) == 0 })
}

// logged waits until the agent's log holds n lines containing each of
// parts.
func (f *rig) logged(t *testing.T, n int, parts ...string) {
	t.Helper()
	testenv.Eventually(t, waitLong, fmt.Sprintf("%d log lines with %q", n, parts), func() bool {
		count := 0
		for line := range strings.Lines(f.logs.String()) {
			if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
				count++
			}
		}
		return count >= n
	})
}

// untouched reports whether drive i still holds only its 0xEE filler.
func (f *rig) untouched(t *testing.T, i int) bool {
	t.Helper()
	data, err := os.ReadFile(f.drives[i].Path)
	if err != nil {
		t.Fatal(err)
	}
	return len(bytes.Trim(data, "\xEE")) == 0
}

// stalledCatalog reads b's store with a cache of its own, and its download
// stalls at a chunk past the image's middle until open is closed (never if
// nil) or the read's context ends: a write stays under way until the test
// has done what it does to it, however slow or fast the machine.
func stalledCatalog(t *testing.T, b *bench, open <-chan struct{}) *catalog.Catalog {
	t.Helper()
	return storeCatalog(t, &gatedStore{Store: b.cat.Store(), key: chunkKey(stallChunk(t, b.m, b.m.Size/2)), open: open})
}

// storeCatalog reads store with a cache of its own, so that every chunk
// is read from store once.
func storeCatalog(t *testing.T, store storage.Store) *catalog.Catalog {
	t.Helper()
	cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(store, catalog.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}
