package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// recorder collects what the simulated imagers and the submitter saw,
// with the time they saw it; the figures are worked out at the end.
type recorder struct {
	jobsWanted, window int
	// allDone is closed once every job has its count of tasks done.
	allDone chan struct{}
	// freed wakes the submitter when a task is done.
	freed chan struct{}

	mu       sync.Mutex
	jobs     map[string]submit    // job id -> its submit
	perKey   map[string][]int     // key serial -> its assignments (indexes in assigns)
	doneAt   map[string]time.Time // task id -> when its result was acknowledged
	doneBy   map[string]int       // job id -> tasks done
	complete int                  // jobs with their count of tasks done
	open     int                  // tasks submitted, minus tasks done
	keys     map[string]time.Time // key serial -> when it was inserted
	pulled   map[string]time.Time // key serial -> when it was removed
	assigns  []assignment         // first delivery of each task run
	done     []time.Time          // when each result was acknowledged
	result   []time.Duration      // TaskResult sent -> acknowledged
	insert   []time.Duration      // DriveInserted sent -> acknowledged
	natsAck  []time.Duration      // an assignment's Ack to the NATS server, confirmed
	first    time.Time            // the first SubmitJob call
	counters                      // anomalies; all should stay 0
}

type counters struct {
	duplicates, redelivered, stale, stops, cancels, ackErrors, subErrors int
}

// submit is one SubmitJob call: when it was made and when it returned,
// and how many tasks it asked for.
type submit struct {
	start, end time.Time
	count      int
}

// assignment is an assignment's arrival at its node.
type assignment struct {
	job, task, serial string
	at                time.Time
	refused           bool // planned for a key already pulled from its slot
}

func newRecorder(cfg Config) *recorder {
	return &recorder{jobsWanted: (cfg.Tasks + cfg.JobCount - 1) / cfg.JobCount, window: cfg.Window,
		allDone: make(chan struct{}), freed: make(chan struct{}, 1),
		jobs: map[string]submit{}, perKey: map[string][]int{}, doneAt: map[string]time.Time{}, doneBy: map[string]int{}, keys: map[string]time.Time{}, pulled: map[string]time.Time{}}
}

// reserve waits until n more tasks fit in the window, and counts them
// open.
func (r *recorder) reserve(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		if r.open+n <= r.window {
			r.open += n
			r.mu.Unlock()
			return nil
		}
		r.mu.Unlock()
		select {
		case <-r.freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *recorder) submitted(jobID string, s submit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jobs[jobID] = s
	// Results that came before SubmitJob returned.
	early := min(r.doneBy[jobID], s.count)
	r.open -= early
	if early == s.count {
		r.completed()
	}
}

// completed counts one more job complete. The caller holds r.mu.
func (r *recorder) completed() {
	if r.complete++; r.complete == r.jobsWanted {
		close(r.allDone)
	}
}

func (r *recorder) started(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.first = t
}

func (r *recorder) inserted(serial string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[serial] = at
}

func (r *recorder) removed(serial string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pulled[serial]; !ok {
		r.pulled[serial] = at
	}
}

func (r *recorder) assigned(a assignment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.perKey[a.serial] = append(r.perKey[a.serial], len(r.assigns))
	r.assigns = append(r.assigns, a)
}

// resultAcked records a task of a job done: its result, sent at sent, is
// stored.
func (r *recorder) resultAcked(jobID, taskID string, sent time.Time) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.doneAt[taskID] = now
	r.result = append(r.result, now.Sub(sent))
	r.done = append(r.done, now)
	r.doneBy[jobID]++
	s, known := r.jobs[jobID]
	if !known || r.doneBy[jobID] > s.count {
		return // over its count: no room freed
	}
	r.open--
	select {
	case r.freed <- struct{}{}:
	default:
	}
	if r.doneBy[jobID] == s.count {
		r.completed()
	}
}

func (r *recorder) insertAcked(sent time.Time) {
	d := time.Since(sent)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.insert = append(r.insert, d)
}

func (r *recorder) natsAcked(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.natsAck = append(r.natsAck, d)
}

func (r *recorder) count(c *int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*c++
}

func (r *recorder) subscriberError(err error) {
	r.count(&r.subErrors)
	slog.Warn("dispatch subscriber", "error", err)
}

// progress returns how many tasks were assigned and done so far.
func (r *recorder) progress() (assigned, done int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.assigns), len(r.done)
}

// latencies are the submit-to-assign figures of every assignment but those
// refused for a pulled key.
type latencies struct {
	// fromReturn is from the later of its job's SubmitJob return and its
	// key's insertion; fromCall the same with the SubmitJob call instead.
	fromReturn, fromCall []time.Duration
	// afterSubmit and afterInsert split fromReturn by which came later.
	afterSubmit, afterInsert []time.Duration
	// early counts the assignments that came before their SubmitJob
	// returned; they count as 0.
	early int
	// gaps are the pauses between consecutive assignments, all nodes
	// merged: the controller dispatches one placement after the other.
	gaps []time.Duration
	// slowest is the assignment that waited longest.
	slowest assignment
}

func (r *recorder) latencies() latencies {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l latencies
	var worst time.Duration
	for _, a := range r.assigns {
		if a.refused {
			continue // its key's insertion was for the task before
		}
		s, ins := r.jobs[a.job], r.keys[a.serial]
		d := a.at.Sub(later(s.end, ins))
		if d < 0 {
			l.early++
			d = 0
		}
		l.fromReturn = append(l.fromReturn, d)
		if d > worst {
			worst, l.slowest = d, a
		}
		l.fromCall = append(l.fromCall, a.at.Sub(later(s.start, ins)))
		if s.end.After(ins) {
			l.afterSubmit = append(l.afterSubmit, d)
		} else {
			l.afterInsert = append(l.afterInsert, d)
		}
	}
	at := make([]time.Time, len(r.assigns))
	for i, a := range r.assigns {
		at[i] = a.at
	}
	slices.SortFunc(at, time.Time.Compare)
	for i := 1; i < len(at); i++ {
		l.gaps = append(l.gaps, at[i].Sub(at[i-1]))
	}
	return l
}

// slotHistory describes every key that went through the slot of serial,
// times from the first submit: when it was inserted, given tasks, done
// and pulled.
func (r *recorder) slotHistory(serial string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	slot := serial[:strings.LastIndexByte(serial, '-')+1]
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%+.1fs", t.Sub(r.first).Seconds())
	}
	var out []string
	for gen := 0; ; gen++ {
		key := slot + strconv.Itoa(gen)
		ins, ok := r.keys[key]
		if !ok {
			return out
		}
		line := fmt.Sprintf("%s inserted %s", key, rel(ins))
		for _, i := range r.perKey[key] {
			a := r.assigns[i]
			line += fmt.Sprintf(", task assigned %s done %s", rel(a.at), rel(r.doneAt[a.task]))
		}
		out = append(out, line+", pulled "+rel(r.pulled[key]))
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// submitTimes are the SubmitJob call durations.
func (r *recorder) submitTimes() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, s := range r.jobs {
		out = append(out, s.end.Sub(s.start))
	}
	return out
}

// overAssigned returns the jobs that got more keys written than their
// count asked for, by id, with how many more.
func (r *recorder) overAssigned() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, n := range r.doneBy {
		if n > r.jobs[id].count {
			out[id] = n - r.jobs[id].count
		}
	}
	return out
}

// rewrite is a key given a second task: the first task, and the second,
// which came while the first was running (concurrent) or after it was
// done (a written key written again).
type rewrite struct {
	serial            string
	first, second     assignment
	firstDone, pulled time.Time
	concurrent        bool
}

// rewritten returns the keys given more than one task: a key is written
// once and then swapped.
func (r *recorder) rewritten() []rewrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rewrite
	for serial, idx := range r.perKey {
		for _, i := range idx[1:] {
			first, second := r.assigns[idx[0]], r.assigns[i]
			done, ok := r.doneAt[first.task]
			out = append(out, rewrite{serial: serial, first: first, second: second, firstDone: done, pulled: r.pulled[serial],
				concurrent: !ok || second.at.Before(done)})
		}
	}
	slices.SortFunc(out, func(a, b rewrite) int { return a.second.at.Compare(b.second.at) })
	return out
}

// doneTimes are when results were acknowledged, in order.
func (r *recorder) doneTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.done)
	slices.SortFunc(out, time.Time.Compare)
	return out
}
