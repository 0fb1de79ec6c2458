package state

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newJobKind(kv jetstream.KeyValue, s *Store) *kind[*imagefarmv1.Job] {
	return &kind[*imagefarmv1.Job]{
		kv: kv, s: s,
		fresh: func() *imagefarmv1.Job { return &imagefarmv1.Job{} },
		key:   func(j *imagefarmv1.Job) (string, error) { return jobKey(j.GetId()) },
		// Tasks live in their own bucket and the revision is the event
		// stream's, so neither is stored with the job. A final job waits
		// for nothing.
		tidy: func(j *imagefarmv1.Job) {
			j.Tasks, j.Revision = nil, 0
			if j.State.Final() {
				j.WaitingReason = ""
			}
		},
		stamp: func(prev, next *imagefarmv1.Job, created bool) {
			next.CreateTime, next.UpdateTime = stampTimes(prev.GetUpdateTime(), next.GetCreateTime(), created)
		},
		event: func(j *imagefarmv1.Job, created bool) *imagefarmv1.JobEvent {
			kind := imagefarmv1.JobEventKind_JOB_EVENT_KIND_JOB_STATE_CHANGED
			if created {
				kind = imagefarmv1.JobEventKind_JOB_EVENT_KIND_JOB_SUBMITTED
			}
			return &imagefarmv1.JobEvent{Time: j.GetUpdateTime(), Kind: kind, Snapshot: &imagefarmv1.JobEvent_Job{Job: j}}
		},
	}
}

func newTaskKind(kv jetstream.KeyValue, s *Store) *kind[*imagefarmv1.Task] {
	return &kind[*imagefarmv1.Task]{
		kv: kv, s: s,
		fresh: func() *imagefarmv1.Task { return &imagefarmv1.Task{} },
		key:   func(t *imagefarmv1.Task) (string, error) { return taskKey(t.GetJobId(), t.GetId()) },
		stamp: func(prev, next *imagefarmv1.Task, created bool) {
			next.CreateTime, next.UpdateTime = stampTimes(prev.GetUpdateTime(), next.GetCreateTime(), created)
		},
		event: func(t *imagefarmv1.Task, created bool) *imagefarmv1.JobEvent {
			kind := imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_STATE_CHANGED
			if created {
				kind = imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_CREATED
			}
			return &imagefarmv1.JobEvent{Time: t.GetUpdateTime(), Kind: kind, Snapshot: &imagefarmv1.JobEvent_Task{Task: t}}
		},
	}
}

// stampTimes gives a record its create and update times. A new record's
// update time equals its create time (kept if the caller set one); every
// later write moves the update time strictly forward, even if the clock did
// not, so "update time == create time" tells a record never changed since
// it was created — which Reconcile relies on to pick the event kind.
func stampTimes(prevUpdate, create *timestamppb.Timestamp, created bool) (*timestamppb.Timestamp, *timestamppb.Timestamp) {
	now := time.Now()
	if created {
		if create == nil {
			create = timestamppb.New(now)
		}
		return create, proto.CloneOf(create)
	}
	if prevUpdate != nil && !now.After(prevUpdate.AsTime()) {
		now = prevUpdate.AsTime().Add(time.Nanosecond)
	}
	return create, timestamppb.New(now)
}

// CreateJob stores a new job and appends its JOB_SUBMITTED event. The job's
// tasks and revision are not stored; create its tasks with CreateTask. The
// store sets create_time (unless set) and update_time. A job with the same
// id fails with ErrExists.
func (s *Store) CreateJob(ctx context.Context, job *imagefarmv1.Job) (*imagefarmv1.Job, error) {
	key, err := jobKey(job.GetId())
	if err != nil {
		return nil, err
	}
	return s.jobs.write(ctx, key, mustCreate, noSeed, func(j *imagefarmv1.Job) error {
		proto.Merge(j, job)
		return nil
	})
}

// UpdateJob lets fn change the job and stores the result with a
// JOB_STATE_CHANGED event, unless fn changed nothing. When another writer
// changed the job meanwhile, fn runs again on the fresh job, so fn must have
// no other effects. fn must not change the id, nor write this same job (it
// holds the job's lock).
func (s *Store) UpdateJob(ctx context.Context, jobID string, fn func(*imagefarmv1.Job) error) (*imagefarmv1.Job, error) {
	key, err := jobKey(jobID)
	if err != nil {
		return nil, err
	}
	return s.jobs.write(ctx, key, mustExist, noSeed, fn)
}

// GetJob returns the job with its tasks, oldest first, and task counts
// computed from them. Its revision is the last event before the job was
// read: watching from revision + 1 misses no later change (and may repeat
// one the snapshot already shows, never the other way round).
func (s *Store) GetJob(ctx context.Context, jobID string) (*imagefarmv1.Job, error) {
	key, err := jobKey(jobID)
	if err != nil {
		return nil, err
	}
	rev, err := s.LastRevision(ctx)
	if err != nil {
		return nil, err
	}
	job, _, err := s.jobs.get(ctx, key)
	if err != nil {
		return nil, err
	}
	if job.Tasks, err = s.ListTasks(ctx, jobID); err != nil {
		return nil, err
	}
	job.TaskCounts = CountTasks(job.Tasks)
	job.Revision = rev
	return job, nil
}

// GetJobRecord returns the job's own record, without its tasks, counts or
// revision: one read, for callers that need only the job's fields.
func (s *Store) GetJobRecord(ctx context.Context, jobID string) (*imagefarmv1.Job, error) {
	key, err := jobKey(jobID)
	if err != nil {
		return nil, err
	}
	job, _, err := s.jobs.get(ctx, key)
	return job, err
}

// CreateTask stores a new task and appends its TASK_CREATED event. The
// store sets create_time (unless set) and update_time. It does not check
// that the job exists.
func (s *Store) CreateTask(ctx context.Context, task *imagefarmv1.Task) (*imagefarmv1.Task, error) {
	key, err := taskKey(task.GetJobId(), task.GetId())
	if err != nil {
		return nil, err
	}
	return s.tasks.write(ctx, key, mustCreate, noSeed, func(t *imagefarmv1.Task) error {
		proto.Merge(t, task)
		return nil
	})
}

// UpdateTask lets fn change the task and stores the result with a
// TASK_STATE_CHANGED event, unless fn changed nothing; see UpdateJob. Every
// stored change is an event, so keep progress-only changes (bytes_done,
// throughput) out of it: they are live-only TASK_PROGRESS events.
func (s *Store) UpdateTask(ctx context.Context, jobID, taskID string, fn func(*imagefarmv1.Task) error) (*imagefarmv1.Task, error) {
	key, err := taskKey(jobID, taskID)
	if err != nil {
		return nil, err
	}
	return s.tasks.write(ctx, key, mustExist, noSeed, fn)
}

// GetTask returns one task.
func (s *Store) GetTask(ctx context.Context, jobID, taskID string) (*imagefarmv1.Task, error) {
	key, err := taskKey(jobID, taskID)
	if err != nil {
		return nil, err
	}
	t, _, err := s.tasks.get(ctx, key)
	return t, err
}

// ListTasks returns a job's tasks, or every task when jobID is "", oldest
// first.
func (s *Store) ListTasks(ctx context.Context, jobID string) ([]*imagefarmv1.Task, error) {
	filter := ">"
	if jobID != "" {
		key, err := jobKey(jobID)
		if err != nil {
			return nil, err
		}
		filter = key + ".*"
	}
	tasks, err := s.tasks.list(ctx, filter)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(tasks, func(a, b *imagefarmv1.Task) int {
		if c := a.GetCreateTime().AsTime().Compare(b.GetCreateTime().AsTime()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetId(), b.GetId())
	})
	return tasks, nil
}

// noSeed is the seed of writes that never create from scratch.
func noSeed[T any](T) error { return nil }

// LastRevision returns the revision of the newest event in the stream, 0
// if there is none: what a live-only TASK_PROGRESS event carries, and where
// a watch "from now on" starts after.
func (s *Store) LastRevision(ctx context.Context) (uint64, error) {
	info, err := s.events.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events stream info: %w", err)
	}
	return info.State.LastSeq, nil
}
