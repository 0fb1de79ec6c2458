package controller_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// farm is a controller on a real NATS server, with its client API and the
// JetStream handle the test's scripted imagers use.
type farm struct {
	api    imagefarmv1.ImageFarmServiceClient // with TLS, no client certificate and the admin token
	token  string                             // the bootstrap admin token's secret
	addr   string
	pki    *testenv.PKI // the farm CA
	js     jetstream.JetStream
	cat    *catalog.Catalog // the catalog the controller reads: img:1 only
	digest string           // img:1's
	store  *scanCounter     // the catalog's store
}

// scanCounter is the catalog's store, counting the listings of every ref
// (the catalog watcher's scans), so that a test can wait for scans that
// follow a change instead of sleeping.
type scanCounter struct {
	storage.Store
	listed atomic.Int64
}

func (s *scanCounter) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	err := s.Store.List(ctx, prefix, fn)
	if prefix == "refs/" {
		s.listed.Add(1)
	}
	return err
}

// waitScans waits until n catalog scans that started after the call have
// ended, with whatever they recorded: the scan running at the call may
// have listed before it, and a scan's records are written before the next
// one lists.
func (f *farm) waitScans(t *testing.T, n int64) {
	t.Helper()
	want := f.store.listed.Load() + 1 + n + 1
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d more catalog scans", n), func() bool { return f.store.listed.Load() >= want })
}

// startFarm starts a farm whose nodes are lost after ttl, without the
// catalog watcher, so that the trail holds only what a test does.
func startFarm(t *testing.T, ttl time.Duration) *farm {
	t.Helper()
	return startFarmWith(t, controller.Config{HeartbeatTTL: ttl, CatalogScanInterval: -1})
}

// startFarmWith starts a farm whose controller has cfg's HeartbeatTTL,
// CatalogScanInterval and TrustedKeys.
func startFarmWith(t *testing.T, cfg controller.Config) *farm {
	t.Helper()
	srv, nc := testenv.NATS(t)
	fs, _ := storage.NewFileStore(t.TempDir())
	s := &scanCounter{Store: fs}
	cat, _ := catalog.New(s, catalog.Options{})
	img := bytes.Repeat([]byte("imagefarm"), 100000)
	res, err := cat.Push(t.Context(), bytes.NewReader(img), int64(len(img)), catalog.PushOptions{Name: "img", Version: "1", Kind: catalog.KindDisk})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewPKI(t)
	c, err := controller.New(controller.Config{NATSURL: srv.ClientURL(), Listener: lis, TLS: ca.ServerTLS(t), ClientCAs: ca.Pool(), Catalog: cat, HeartbeatTTL: cfg.HeartbeatTTL,
		CatalogScanInterval: cfg.CatalogScanInterval, TrustedKeys: cfg.TrustedKeys, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller Run = %v", err)
		}
	})
	js, _ := jetstream.New(nc)
	f := &farm{addr: lis.Addr().String(), pki: ca, js: js, cat: cat, digest: res.Digest, store: s}
	f.token = storeToken(t, js, "admin", imagefarmv1.Role_ROLE_ADMIN)
	f.api = imagefarmv1.NewImageFarmServiceClient(f.dial(t, credentials.NewTLS(ca.ClientTLS(t, "")), f.bearer()))
	return f
}

// storeToken writes a token to the farm's NATS, as an admin on the NATS
// host can, without an audit record, and returns its secret.
func storeToken(t *testing.T, js jetstream.JetStream, name string, role imagefarmv1.Role) string {
	t.Helper()
	st, err := tokens.Open(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.Create(t.Context(), name, role, "test")
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// bearer sends the admin token with every call.
func (f *farm) bearer() grpc.DialOption {
	return grpc.WithPerRPCCredentials(tokens.Bearer{Secret: f.token})
}

// dial connects to the controller with creds until the test ends.
func (f *farm) dial(t *testing.T, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(f.addr, append(opts, grpc.WithTransportCredentials(creds))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// imagerAs is an imager's connection to the controller, with the
// certificate of node.
func (f *farm) imagerAs(t *testing.T, node string) imagefarmv1.ImagerServiceClient {
	t.Helper()
	return imagefarmv1.NewImagerServiceClient(f.dial(t, credentials.NewTLS(f.pki.ClientTLS(t, node))))
}

// scriptedImager speaks the imager side of the protocol by hand.
type scriptedImager struct {
	t       *testing.T
	stream  imagefarmv1.ImagerService_ConnectClient
	epoch   uint64
	seq     uint64
	assigns chan *imagefarmv1.TaskAssignment
	replies chan *imagefarmv1.ConnectResponse // closed when the stream ends
	err     error                             // what it ended with, once replies is closed
}

func (f *farm) connect(t *testing.T, nodeID string, drives ...*imagefarmv1.Drive) *scriptedImager {
	t.Helper()
	stream, err := f.imagerAs(t, nodeID).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	im := &scriptedImager{t: t, stream: stream, assigns: make(chan *imagefarmv1.TaskAssignment, 16), replies: make(chan *imagefarmv1.ConnectResponse, 64)}
	stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: &imagefarmv1.Hello{
		NodeId: nodeID, InstanceId: "i-" + nodeID, Pool: "bench", Drives: drives}}})
	first, err := stream.Recv()
	if err != nil || first.GetHelloAck() == nil {
		t.Fatalf("Hello answered %v, %v; want HelloAck", first, err)
	}
	im.epoch = first.GetHelloAck().GetEpoch()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				im.err = err
				close(im.replies)
				return
			}
			im.replies <- m
		}
	}()
	sub, err := wire.NewSubscriber(f.js, wire.SubscriberConfig{NodeID: nodeID}, func(ctx context.Context, d *wire.Delivery) {
		if a := d.Message.GetAssignment(); a != nil {
			im.assigns <- a
		}
		d.Ack(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return im
}

func (im *scriptedImager) send(m *imagefarmv1.ConnectRequest) {
	im.seq++
	m.Seq = im.seq
	if err := im.stream.Send(m); err != nil {
		im.t.Fatal(err)
	}
}

func (im *scriptedImager) assignment() *imagefarmv1.TaskAssignment {
	select {
	case a := <-im.assigns:
		return a
	case <-time.After(10 * time.Second):
		im.t.Fatal("no assignment within 10s")
	}
	return nil
}

func (im *scriptedImager) result(a *imagefarmv1.TaskAssignment, state imagefarmv1.TaskState, digest string) {
	im.send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: state, VerifiedDigest: digest}}})
}

func usbDrive(id string) *imagefarmv1.Drive {
	return &imagefarmv1.Drive{Id: id, Serial: "SN-" + id, SizeBytes: 64 << 20, Removable: true,
		Transport: imagefarmv1.Transport_TRANSPORT_USB, State: imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE}
}

func waitJob(t *testing.T, f *farm, id string, want imagefarmv1.JobState) *imagefarmv1.Job {
	t.Helper()
	var job *imagefarmv1.Job
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("job %s %v", id, want), func() bool {
		resp, err := f.api.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: id})
		job = resp.GetJob()
		return err == nil && job.GetState() == want
	})
	return job
}

func TestExplicitJobRunsToSuccessAndWatchSeesEveryEventOnce(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	im := f.connect(t, "n1", usbDrive("d1"), usbDrive("d2"))
	sub, err := f.api.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1",
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: []string{"n1/d1", "n1/d2"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	job := sub.GetJob()
	if job.GetManifestDigest() != f.digest {
		t.Errorf("job pinned %s, want %s", job.GetManifestDigest(), f.digest)
	}
	for range 2 {
		a := im.assignment()
		if a.GetEpoch() != im.epoch || a.GetDrive().GetSerial() != "SN-"+a.GetDrive().GetId() || a.GetManifestDigest() != f.digest {
			t.Errorf("assignment %v: want epoch %d, the drive's serial and the digest", a, im.epoch)
		}
		im.result(a, imagefarmv1.TaskState_TASK_STATE_DONE, f.digest)
	}
	done := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if done.GetTaskCounts().GetDone() != 2 {
		t.Errorf("task counts %v, want 2 done", done.GetTaskCounts())
	}
	w, err := f.api.WatchJob(t.Context(), &imagefarmv1.WatchJobRequest{JobId: job.GetId(), FromRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	var final bool
	for {
		resp, err := w.Recv()
		if err != nil {
			break // the watch of one job ends after its final event
		}
		ev := resp.GetEvent()
		if ev.GetKind() == imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
			continue
		}
		if seen[ev.GetRevision()] {
			t.Errorf("revision %d seen twice", ev.GetRevision())
		}
		seen[ev.GetRevision()] = true
		final = ev.GetJob().GetState() == imagefarmv1.JobState_JOB_STATE_SUCCEEDED
	}
	if !final || len(seen) < 5 {
		t.Errorf("watch saw %d events, final %v; want submit, tasks, running, succeeded", len(seen), final)
	}
}
