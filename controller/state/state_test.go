package state

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func TestJobRoundTrip(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	in := testJob("job-1")
	in.Labels = map[string]string{"ticket": "INC-42"}
	in.Tasks = []*imagefarmv1.Task{testTask("job-1", "ignored", "n1")} // not stored with the job
	in.Revision = 99
	created, err := s.CreateJob(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.GetCreateTime() == nil || !proto.Equal(created.GetCreateTime(), created.GetUpdateTime()) {
		t.Errorf("CreateJob() times = %v, %v; want create time set and equal to update time", created.GetCreateTime(), created.GetUpdateTime())
	}
	got, err := s.GetJob(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetTasks()) != 0 || got.GetLabels()["ticket"] != "INC-42" || got.GetImageRef() != in.GetImageRef() {
		t.Errorf("GetJob() = %v, want the job as created, without tasks", got)
	}
	if got.GetRevision() != 1 {
		t.Errorf("GetJob().Revision = %d, want 1 (the JOB_SUBMITTED event)", got.GetRevision())
	}
	if _, err := s.CreateJob(ctx, testJob("job-1")); !errors.Is(err, ErrExists) {
		t.Errorf("CreateJob(existing) = %v, want ErrExists", err)
	}
	updated, err := s.UpdateJob(ctx, "job-1", func(j *imagefarmv1.Job) error {
		j.State = imagefarmv1.JobState_JOB_STATE_RUNNING
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if updated.GetState() != imagefarmv1.JobState_JOB_STATE_RUNNING || !updated.GetUpdateTime().AsTime().After(updated.GetCreateTime().AsTime()) {
		t.Errorf("UpdateJob() = state %v, update time %v; want RUNNING, after create time", updated.GetState(), updated.GetUpdateTime().AsTime())
	}
	if got, _ := s.GetJob(ctx, "job-1"); got.GetState() != imagefarmv1.JobState_JOB_STATE_RUNNING || got.GetRevision() != 2 {
		t.Errorf("GetJob() after update = state %v revision %d, want RUNNING 2", got.GetState(), got.GetRevision())
	}
}

func TestUpdateRefusals(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	createJob(t, s, testJob("j"), testTask("j", "t", "n1"))
	if _, err := s.UpdateJob(ctx, "missing", func(*imagefarmv1.Job) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateJob(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetTask(ctx, "j", "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetTask(missing) = %v, want ErrNotFound", err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateTask(ctx, "j", "t", func(*imagefarmv1.Task) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("UpdateTask(failing fn) = %v, want %v", err, boom)
	}
	if _, err := s.UpdateTask(ctx, "j", "t", func(task *imagefarmv1.Task) error { task.Id = "u"; return nil }); !errors.Is(err, ErrIDChanged) {
		t.Errorf("UpdateTask(fn changing id) = %v, want ErrIDChanged", err)
	}
	before, _ := s.LastRevision(ctx)
	unchanged, err := s.UpdateTask(ctx, "j", "t", func(*imagefarmv1.Task) error { return nil })
	if err != nil || unchanged.GetState() != imagefarmv1.TaskState_TASK_STATE_QUEUED {
		t.Errorf("UpdateTask(no change) = %v, %v", unchanged, err)
	}
	if after, _ := s.LastRevision(ctx); after != before {
		t.Errorf("UpdateTask(no change) appended events: revision %d -> %d", before, after)
	}
}

// TestConcurrentUpdatesLoseNothing races writers in two stores (two
// controllers) and in goroutines of each on one task; optimistic
// concurrency must keep every increment and give each its own event.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	js, url := newJS(t)
	a := newStore(t, js, Config{})
	b := newStore(t, connect(t, url), Config{})
	createJob(t, a, testJob("j"), testTask("j", "t", "n1"))
	const perWriter, writers = 20, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			for range perWriter {
				_, err := s.UpdateTask(t.Context(), "j", "t", func(task *imagefarmv1.Task) error {
					task.Epoch++
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("UpdateTask() = %v", err)
	}
	got, err := b.GetTask(t.Context(), "j", "t")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEpoch() != perWriter*writers {
		t.Errorf("Epoch after %d racing increments = %d", perWriter*writers, got.GetEpoch())
	}
	// job submitted, task created, then one event per increment
	if last, _ := a.LastRevision(t.Context()); last != 2+perWriter*writers {
		t.Errorf("events = %d, want %d", last, 2+perWriter*writers)
	}
}

func TestGetJobWithTasks(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	createJob(t, s, testJob("other"), testTask("other", "x", "n1"))
	var tasks []*imagefarmv1.Task
	start := time.Now().Add(-time.Minute)
	for i := range 3 {
		task := testTask("j", fmt.Sprintf("t%d", 3-i), "n1") // ids sort opposite to creation
		task.CreateTime = timestamppb.New(start.Add(time.Duration(i) * time.Second))
		tasks = append(tasks, task)
	}
	createJob(t, s, testJob("j"), tasks...)
	if _, err := s.UpdateTask(ctx, "j", "t2", func(task *imagefarmv1.Task) error {
		task.State = imagefarmv1.TaskState_TASK_STATE_DONE
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	job, err := s.GetJob(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, task := range job.GetTasks() {
		ids = append(ids, task.GetId())
	}
	if fmt.Sprint(ids) != "[t3 t2 t1]" {
		t.Errorf("GetJob().Tasks = %v, want [t3 t2 t1] (oldest first)", ids)
	}
	if c := job.GetTaskCounts(); c.GetQueued() != 2 || c.GetDone() != 1 {
		t.Errorf("GetJob().TaskCounts = %v, want 2 queued, 1 done", c)
	}
	if _, err := s.GetJob(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJob(missing) = %v, want ErrNotFound", err)
	}
}

// TestRestart recreates the store on a new connection, as a restarted
// controller would, and finds everything the first one stored.
func TestRestart(t *testing.T) {
	js, url := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	createJob(t, s, testJob("j"), testTask("j", "t", "n1"))
	if _, err := s.UpdateNode(ctx, "n1", func(n *imagefarmv1.Node) error { n.Epoch = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateDrive(ctx, "n1", "wwn-0x5000.c500", func(d *imagefarmv1.Drive) error { d.SizeBytes = 1 << 30; return nil }); err != nil {
		t.Fatal(err)
	}
	restarted := newStore(t, connect(t, url), Config{})
	job, err := restarted.GetJob(ctx, "j")
	if err != nil || len(job.GetTasks()) != 1 || job.GetRevision() != 2 {
		t.Fatalf("GetJob() after restart = %v, %v; want the job, its task, revision 2", job, err)
	}
	if n, err := restarted.GetNode(ctx, "n1"); err != nil || n.GetEpoch() != 3 {
		t.Errorf("GetNode() after restart = %v, %v; want epoch 3", n, err)
	}
	if d, err := restarted.GetDrive(ctx, "n1", "wwn-0x5000.c500"); err != nil || d.GetSizeBytes() != 1<<30 {
		t.Errorf("GetDrive() after restart = %v, %v", d, err)
	}
	w := startWatch(t, restarted, "j", 1)
	if got := w.waitFor(t, 2); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("Watch(from 1) after restart = %v, want [1 2]", got)
	}
}
