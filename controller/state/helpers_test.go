package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// newJS starts an embedded NATS server and returns a JetStream client on it
// and the server's URL, for tests that open more connections ("another
// controller").
func newJS(t *testing.T) (jetstream.JetStream, string) {
	t.Helper()
	srv, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, srv.ClientURL()
}

// connect opens another connection to url, as a second controller would.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func newStore(t *testing.T, js jetstream.JetStream, cfg Config) *Store {
	t.Helper()
	s, err := New(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return s
}

func testJob(id string) *imagefarmv1.Job {
	return &imagefarmv1.Job{
		Id:             id,
		ImageRef:       "universal:stable",
		ManifestDigest: "sha256:" + fmt.Sprintf("%064d", 1),
		State:          imagefarmv1.JobState_JOB_STATE_PENDING,
	}
}

func testTask(jobID, id, node string) *imagefarmv1.Task {
	return &imagefarmv1.Task{
		Id: id, JobId: jobID, NodeId: node,
		Drive:   &imagefarmv1.DriveIdentity{Id: "usb-" + id, Serial: "S" + id, SizeBytes: 1 << 30},
		State:   imagefarmv1.TaskState_TASK_STATE_QUEUED,
		Attempt: 1,
	}
}

// createJob creates a job with the given tasks.
func createJob(t *testing.T, s *Store, job *imagefarmv1.Job, tasks ...*imagefarmv1.Task) {
	t.Helper()
	if _, err := s.CreateJob(t.Context(), job); err != nil {
		t.Fatalf("CreateJob(%s) = %v", job.GetId(), err)
	}
	for _, task := range tasks {
		if _, err := s.CreateTask(t.Context(), task); err != nil {
			t.Fatalf("CreateTask(%s) = %v", task.GetId(), err)
		}
	}
}

// watcher collects what a Watch delivers, in a goroutine the test waits for.
type watcher struct {
	s      *Store
	jobID  string
	mu     sync.Mutex
	events []*imagefarmv1.JobEvent
	got    chan struct{}
	done   chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, s *Store, jobID string, from uint64) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &watcher{s: s, jobID: jobID, got: make(chan struct{}, 1), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- s.Watch(ctx, jobID, from, func(ev *imagefarmv1.JobEvent) error {
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
			select {
			case w.got <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// waitFor waits until n events arrived, then proves no extra (duplicate)
// one follows them: it appends a sentinel event to the watched job, waits
// for it and checks it came right after the n. It returns the n events'
// revisions and forgets the sentinel.
func (w *watcher) waitFor(t *testing.T, n int) []uint64 {
	t.Helper()
	w.waitCount(t, n)
	job := w.jobID
	if job == "" {
		job = "sentinel"
	}
	sentinel := appendN(t, w.s, job, 1)[0]
	w.waitCount(t, n+1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if last := w.events[len(w.events)-1].GetRevision(); len(w.events) != n+1 || last != sentinel {
		t.Fatalf("Watch delivered %d events up to revision %d, want %d then the sentinel %d", len(w.events), last, n, sentinel)
	}
	w.events = w.events[:n]
	revs := make([]uint64, n)
	for i, ev := range w.events {
		revs[i] = ev.GetRevision()
	}
	return revs
}

// waitCount waits until n events arrived.
func (w *watcher) waitCount(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for w.count() < n {
		select {
		case <-w.got:
		case err := <-w.done:
			t.Fatalf("Watch ended early: %v", err)
		case <-deadline:
			t.Fatalf("Watch delivered %d events in 10s, want %d", w.count(), n)
		}
	}
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

func (w *watcher) revisions() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	revs := make([]uint64, len(w.events))
	for i, ev := range w.events {
		revs[i] = ev.GetRevision()
	}
	return revs
}

// stop cancels the watch and checks it ended with the context's error.
func (w *watcher) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Watch() = %v, want context.Canceled", err)
		}
		w.done <- err // let a second stop see it too
	case <-time.After(5 * time.Second):
		t.Errorf("Watch did not stop within 5s of its context's end")
	}
}

// msgCounter makes the message ids of appendN unique.
var msgCounter atomic.Uint64

// appendN appends n job events for jobID and returns their revisions.
func appendN(t *testing.T, s *Store, jobID string, n int) []uint64 {
	t.Helper()
	var revs []uint64
	for range n {
		ev := &imagefarmv1.JobEvent{
			Kind:     imagefarmv1.JobEventKind_JOB_EVENT_KIND_JOB_STATE_CHANGED,
			Snapshot: &imagefarmv1.JobEvent_Job{Job: testJob(jobID)},
		}
		rev, err := s.Append(t.Context(), ev, fmt.Sprintf("test/%s/%d", jobID, msgCounter.Add(1)))
		if err != nil {
			t.Fatalf("Append() = %v", err)
		}
		revs = append(revs, rev)
	}
	return revs
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for r := from; r <= to; r++ {
		out = append(out, r)
	}
	return out
}
