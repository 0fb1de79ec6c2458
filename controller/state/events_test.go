package state

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

func TestAppendDeduplicates(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ev := &imagefarmv1.JobEvent{
		Kind:     imagefarmv1.JobEventKind_JOB_EVENT_KIND_JOB_SUBMITTED,
		Snapshot: &imagefarmv1.JobEvent_Job{Job: testJob("j1")},
	}
	first, err := s.Append(t.Context(), ev, "retry-me")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(t.Context(), ev, "retry-me")
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("Append(same id) = %d, want the first revision %d", again, first)
	}
	other, err := s.Append(t.Context(), ev, "another")
	if err != nil {
		t.Fatal(err)
	}
	if other != first+1 {
		t.Errorf("Append(new id) = %d, want %d", other, first+1)
	}
	if last, _ := s.LastRevision(t.Context()); last != other {
		t.Errorf("stream holds %d events, want %d", last, other)
	}
}

func TestAppendRefusesBadEvents(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	tests := []struct {
		name  string
		ev    *imagefarmv1.JobEvent
		msgID string
	}{
		{"no snapshot", &imagefarmv1.JobEvent{}, "a"},
		{"bad job id", &imagefarmv1.JobEvent{Snapshot: &imagefarmv1.JobEvent_Job{Job: testJob("a.b")}}, "b"},
		{"wildcard task job id", &imagefarmv1.JobEvent{Snapshot: &imagefarmv1.JobEvent_Task{Task: testTask(">", "t", "n")}}, "c"},
		{"no message id", &imagefarmv1.JobEvent{Snapshot: &imagefarmv1.JobEvent_Job{Job: testJob("j")}}, ""},
	}
	for _, tt := range tests {
		if rev, err := s.Append(t.Context(), tt.ev, tt.msgID); err == nil {
			t.Errorf("%s: Append() = %d, nil; want an error", tt.name, rev)
		}
	}
}

func TestWatchFromZeroIsLiveOnly(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	appendN(t, s, "j1", 3)
	w := startWatch(t, s, "", 0)
	waitConsumer(t, s)
	appendN(t, s, "j1", 2)
	if got, want := w.waitFor(t, 2), []uint64{4, 5}; !slices.Equal(got, want) {
		t.Errorf("Watch(from 0) revisions = %v, want %v", got, want)
	}
}

func TestWatchReplaysThenFollows(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	appendN(t, s, "j1", 10)
	w := startWatch(t, s, "", 4)
	appendN(t, s, "j1", 5)
	if got, want := w.waitFor(t, 12), seq(4, 15); !slices.Equal(got, want) {
		t.Errorf("Watch(from 4) revisions = %v, want %v", got, want)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if ev.GetJob().GetRevision() != ev.GetRevision() {
			t.Errorf("event %d: job snapshot revision = %d, want the event's", ev.GetRevision(), ev.GetJob().GetRevision())
		}
	}
}

func TestWatchOneJob(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	var want []uint64
	for range 3 {
		want = append(want, appendN(t, s, "mine", 2)...)
		appendN(t, s, "other", 3)
	}
	w := startWatch(t, s, "mine", 1)
	want = append(want, appendN(t, s, "mine", 1)...)
	appendN(t, s, "other", 1)
	if got := w.waitFor(t, len(want)); !slices.Equal(got, want) {
		t.Errorf("Watch(mine, from 1) revisions = %v, want %v", got, want)
	}
}

func TestWatchRevisionTooOld(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{EventsMaxMsgs: 5})
	appendN(t, s, "j1", 10) // keeps 6..10
	err := s.Watch(t.Context(), "", 2, func(*imagefarmv1.JobEvent) error { return nil })
	var tooOld *RevisionTooOldError
	if !errors.Is(err, ErrRevisionTooOld) || !errors.As(err, &tooOld) || tooOld.First != 6 {
		t.Fatalf("Watch(from 2) = %v, want ErrRevisionTooOld with first 6", err)
	}
	w := startWatch(t, s, "j1", 6)
	if got, want := w.waitFor(t, 5), seq(6, 10); !slices.Equal(got, want) {
		t.Errorf("Watch(from 6) revisions = %v, want %v", got, want)
	}
}

func TestWatchFutureRevision(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	appendN(t, s, "j1", 3)
	if err := s.Watch(t.Context(), "j1", 5, func(*imagefarmv1.JobEvent) error { return nil }); !errors.Is(err, ErrFutureRevision) {
		t.Fatalf("Watch(from 5) after 3 events = %v, want ErrFutureRevision", err)
	}
	w := startWatch(t, s, "j1", 4) // the next one: wait for it
	appendN(t, s, "j1", 1)
	if got, want := w.waitFor(t, 1), []uint64{4}; !slices.Equal(got, want) {
		t.Errorf("Watch(from 4) revisions = %v, want %v", got, want)
	}
}

func TestWatchEnds(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	appendN(t, s, "j1", 3)
	calls := 0
	err := s.Watch(t.Context(), "j1", 1, func(ev *imagefarmv1.JobEvent) error {
		calls++
		if ev.GetRevision() == 2 {
			return ErrStopWatch
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Errorf("Watch() stopped at revision 2 = %v after %d calls, want nil after 2", err, calls)
	}
	boom := errors.New("boom")
	err = s.Watch(t.Context(), "j1", 1, func(*imagefarmv1.JobEvent) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Watch() with a failing callback = %v, want %v", err, boom)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = s.Watch(ctx, "j1", 0, func(*imagefarmv1.JobEvent) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Watch() past its deadline = %v, want context.DeadlineExceeded", err)
	}
	if err := s.Watch(t.Context(), "a.b", 0, nil); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Watch(a.b) = %v, want ErrInvalidID", err)
	}
}

// waitConsumer waits until a watch's consumer exists, so that what the test
// appends next is "from now on" for it.
func waitConsumer(t *testing.T, s *Store) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "a consumer on the events stream", func() bool {
		info, err := s.events.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers > 0
	})
}
