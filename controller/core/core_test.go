package core

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// trail and stops are the core's Recorder and Stopper in these tests:
// they keep what they were given.
type trail struct {
	mu   sync.Mutex
	recs []*imagefarmv1.AuditRecord
}

func (tr *trail) Record(_ context.Context, rec *imagefarmv1.AuditRecord) *imagefarmv1.AuditRecord {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.recs = append(tr.recs, rec)
	return rec
}

type stops struct{}

func (stops) StopTask(context.Context, *imagefarmv1.Task, imagefarmv1.StopReason, string) {}

// newCore is a core over a store in an embedded NATS server.
func newCore(t *testing.T) (*Core, *state.Store, *trail) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.New(t.Context(), js, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &trail{}
	c, err := New(Config{Store: st, Audit: tr, Stop: stops{}})
	if err != nil {
		t.Fatal(err)
	}
	return c, st, tr
}

// TestARefusedMoveWritesNothing: a task that was canceled takes no later
// result, and neither KV nor the events stream nor the audit trail moves.
func TestARefusedMoveWritesNothing(t *testing.T) {
	c, st, tr := newCore(t)
	ctx := t.Context()
	job := &imagefarmv1.Job{Id: "j1", ImageRef: "img:1", State: jobPending}
	if _, err := c.CreateJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	task := &imagefarmv1.Task{Id: "j1_t1", JobId: "j1", NodeId: "n1", State: taskAssigned,
		Drive: &imagefarmv1.DriveIdentity{Id: "d1"}}
	if _, err := c.createTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := c.CancelJob(ctx, "user:alice", job); err != nil {
		t.Fatal(err)
	}
	rev, err := st.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	records := len(tr.recs)

	err = c.EndTask(ctx, "node:n1", task, &imagefarmv1.TaskResult{TaskId: "j1_t1", State: taskDone})
	if err != nil {
		t.Fatalf("EndTask after a cancel = %v, want nil (a result sent late changes nothing)", err)
	}
	err = c.Progress(ctx, task, &imagefarmv1.TaskProgress{TaskId: "j1_t1", State: taskWriting})
	var me *MoveError
	if !errors.As(err, &me) || me.From != taskCanceled || me.To != taskWriting {
		t.Errorf("Progress after a cancel = %v, want a MoveError CANCELED to WRITING", err)
	}
	if err := c.CancelJob(ctx, "user:alice", job); !errors.Is(err, ErrJobEnded) {
		t.Errorf("CancelJob of a canceled job = %v, want ErrJobEnded", err)
	}

	got, err := st.GetTask(ctx, "j1", "j1_t1")
	if err != nil || got.GetState() != taskCanceled {
		t.Errorf("task = %v, %v; want CANCELED", got.GetState(), err)
	}
	if after, err := st.LastRevision(ctx); err != nil || after != rev {
		t.Errorf("events stream at %d, %v after refused moves; want %d (no event)", after, err, rev)
	}
	if len(tr.recs) != records {
		t.Errorf("audit records %v after refused moves, want none", tr.recs[records:])
	}
}
