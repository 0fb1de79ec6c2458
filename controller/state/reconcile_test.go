package state

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// crashAfterKVWrite stores a task the way the store does, but then "dies"
// before appending its event: the KV write alone.
func crashAfterKVWrite(t *testing.T, js jetstream.JetStream, task *imagefarmv1.Task, created bool) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), TasksBucket)
	if err != nil {
		t.Fatal(err)
	}
	key, err := taskKey(task.GetJobId(), task.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if created {
		task.CreateTime = timestamppb.Now()
		task.UpdateTime = proto.CloneOf(task.CreateTime)
	} else {
		task.UpdateTime = timestamppb.New(task.GetCreateTime().AsTime().Add(time.Second))
	}
	data, err := proto.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), key, data); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileAfterCrash: a controller stored two changes and died before
// appending their events; the next store's New appends exactly those, with
// the right kinds, and nothing twice.
func TestReconcileAfterCrash(t *testing.T) {
	js, url := newJS(t)
	s := newStore(t, js, Config{})
	createJob(t, s, testJob("j"), testTask("j", "t1", "n1"))
	stored, err := s.GetTask(t.Context(), "j", "t1")
	if err != nil {
		t.Fatal(err)
	}
	stored.State = imagefarmv1.TaskState_TASK_STATE_WRITING
	crashAfterKVWrite(t, js, stored, false)
	crashAfterKVWrite(t, js, testTask("j", "t2", "n1"), true)

	restarted := newStore(t, connect(t, url), Config{}) // New reconciles
	w := startWatch(t, restarted, "j", 1)
	if got := w.waitFor(t, 4); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("events after restart = %v, want [1 2 3 4]", got)
	}
	w.mu.Lock()
	tail := w.events[2:]
	w.mu.Unlock()
	wantKinds := []imagefarmv1.JobEventKind{
		imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_STATE_CHANGED,
		imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_CREATED,
	}
	for i, ev := range tail {
		if ev.GetKind() != wantKinds[i] {
			t.Errorf("reconciled event %d kind = %v, want %v", ev.GetRevision(), ev.GetKind(), wantKinds[i])
		}
	}
	if tail[0].GetTask().GetState() != imagefarmv1.TaskState_TASK_STATE_WRITING {
		t.Errorf("reconciled event snapshot = %v, want the stored WRITING task", tail[0].GetTask())
	}
	before, err := s.LastRevision(t.Context()) // the 4 and the watcher's sentinel
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if n, err := restarted.Reconcile(t.Context()); n != 0 || err != nil {
			t.Errorf("Reconcile() again = %d, %v; want 0, nil", n, err)
		}
	}
	if _, err := New(t.Context(), connect(t, url), Config{}); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastRevision(t.Context()); last != before {
		t.Errorf("events after more restarts = %d, want %d", last, before)
	}
}

// TestEventPending: when the events stream cannot take the event, the
// change is stored, the caller is told, and the event goes out before the
// record's next change is acknowledged — even a retry that changes nothing.
func TestEventPending(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	createJob(t, s, testJob("j"), testTask("j", "t", "n1"))
	if err := js.DeleteStream(ctx, EventsStream); err != nil {
		t.Fatal(err)
	}
	setDone := func(task *imagefarmv1.Task) error {
		task.State = imagefarmv1.TaskState_TASK_STATE_DONE
		return nil
	}
	if _, err := s.UpdateTask(ctx, "j", "t", setDone); !errors.Is(err, ErrEventPending) {
		t.Fatalf("UpdateTask() without an events stream = %v, want ErrEventPending", err)
	}
	if got, _ := s.GetTask(ctx, "j", "t"); got.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Errorf("task state = %v, want DONE stored", got.GetState())
	}
	// The imager re-sends its report: no change, but still not acknowledged.
	if _, err := s.UpdateTask(ctx, "j", "t", setDone); !errors.Is(err, ErrEventPending) {
		t.Fatalf("UpdateTask(retry) without an events stream = %v, want ErrEventPending", err)
	}
	if _, err := ensureEvents(ctx, js, s.cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, "j", "t", setDone); err != nil {
		t.Fatalf("UpdateTask(retry) with the stream back = %v", err)
	}
	w := startWatch(t, s, "j", 1)
	w.waitFor(t, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) != 1 || w.events[0].GetTask().GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Errorf("events in the new stream = %v, want exactly the DONE change", w.events)
	}
}
