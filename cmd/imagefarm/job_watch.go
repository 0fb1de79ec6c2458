package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// watchPatience is how long watch keeps reconnecting to a controller that
// does not answer before it gives up.
const watchPatience = time.Minute

// watchView shows a watched job: live bars, or JSON lines.
type watchView interface {
	// sync shows the job's state as GetJob returned it.
	sync(job *imagefarmv1.Job)
	// event shows one event.
	event(ev *imagefarmv1.JobEvent) error
	// notice tells the user something about the watch itself.
	notice(format string, args ...any)
	// close ends the live output; the summary follows.
	close()
}

// watchJob follows a job until it is final and prints how it ended. The
// error is an exitError unless the job succeeded.
func watchJob(cmd *cobra.Command, c *controllerClient, id string, asJSON bool) error {
	ctx, w := cmd.Context(), cmd.OutOrStdout()
	resp, err := c.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: id})
	if err != nil {
		return err
	}
	var view watchView = &jsonLines{w: w, errw: cmd.ErrOrStderr()}
	if !asJSON {
		view = newTaskBars(cmd.ErrOrStderr())
	}
	view.sync(resp.GetJob())
	jw := &jobWatch{c: c, id: id, view: view, last: resp.GetJob().GetRevision(), final: resp.GetJob().GetState().Final()}
	err = jw.follow(ctx)
	view.close()
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "stopped watching; job %s goes on: imagefarm job watch %s\n", id, id)
		return exitError{"watch interrupted"}
	}
	if err != nil {
		return err
	}
	if resp, err = c.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: id}); err != nil {
		return err
	}
	if asJSON {
		err = printProtoLine(w, resp.GetJob())
	} else {
		err = printSummary(w, resp.GetJob())
	}
	if err != nil {
		return err
	}
	return jobResult(resp.GetJob())
}

// jobResult is nil when the job succeeded, else an exitError: the exit
// code of watch is 0 only for a job that succeeded.
func jobResult(job *imagefarmv1.Job) error {
	if s := job.GetState(); s != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		return exitError{fmt.Sprintf("job %s %s", job.GetId(), strings.ToLower(enumName(s)))}
	}
	return nil
}

// jobWatch streams one job's events into a view, resuming after the last
// stored event it showed whenever the stream breaks.
type jobWatch struct {
	c     *controllerClient
	id    string
	view  watchView
	last  uint64 // revision of the last stored event shown
	final bool
}

// errStreamEnded is why a watch resumes when the controller ended the
// stream before the job was final (it restarted or shed load).
var errStreamEnded = errors.New("the controller ended the stream before the job was final")

// follow streams until the job is final.
func (jw *jobWatch) follow(ctx context.Context) error {
	pause, lastOK := wait.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}, time.Now()
	for !jw.final {
		got, err := jw.stream(ctx)
		if got {
			lastOK = time.Now()
			pause.Reset()
		}
		switch {
		case jw.final:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			err = errStreamEnded
		case status.Code(err) == codes.OutOfRange:
			if err := jw.resync(ctx); err != nil || jw.final {
				return err
			}
		case !resumable(err):
			return jw.c.wrap(err)
		}
		err = jw.c.wrap(err)
		if time.Since(lastOK) > watchPatience {
			return fmt.Errorf("watch job %s: gave up after %s: %w", jw.id, watchPatience, err)
		}
		delay := pause.Next()
		jw.view.notice("watch: %v; resuming after revision %d in %s", err, jw.last, delay)
		if !wait.Sleep(ctx, delay) {
			return ctx.Err()
		}
	}
	return nil
}

// resync shows the job as it is now, after the controller said that the
// events following the last one shown are no longer kept, and goes on
// from there.
func (jw *jobWatch) resync(ctx context.Context) error {
	resp, err := jw.c.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: jw.id})
	if err != nil {
		return err
	}
	jw.view.sync(resp.GetJob())
	jw.last, jw.final = resp.GetJob().GetRevision(), resp.GetJob().GetState().Final()
	return nil
}

// stream runs one WatchJob call from after the last stored event shown,
// until it ends or the job is final; got says whether it received anything.
func (jw *jobWatch) stream(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := jw.c.WatchJob(ctx, &imagefarmv1.WatchJobRequest{JobId: jw.id, FromRevision: jw.last + 1})
	if err != nil {
		return false, err
	}
	for !jw.final {
		resp, err := s.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = true
		ev := resp.GetEvent()
		if ev.GetKind() != imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
			if ev.GetRevision() <= jw.last {
				continue // already shown before a reconnect
			}
			jw.last = ev.GetRevision()
		}
		if err := jw.view.event(ev); err != nil {
			return got, err
		}
		jw.final = ev.GetJob() != nil && ev.GetJob().GetState().Final()
	}
	return got, nil
}

// resumable says whether a broken watch is worth resuming: the controller
// or the network failed, not the request.
func resumable(err error) bool {
	if _, ok := status.FromError(err); !ok {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.Internal, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// jsonLines shows a watch as one JSON line per event.
type jsonLines struct {
	w, errw io.Writer
}

func (j *jsonLines) sync(*imagefarmv1.Job) {}

func (j *jsonLines) event(ev *imagefarmv1.JobEvent) error { return printProtoLine(j.w, ev) }

func (j *jsonLines) notice(format string, args ...any) {
	fmt.Fprintln(j.errw, "imagefarm: "+oneLine(fmt.Sprintf(format, args...)))
}

func (j *jsonLines) close() {}

// taskBars shows one live bar per task: node and slot, state, bytes of the
// current state, and the rate and ETA the controller reports. Only the
// watch's goroutine calls its methods; mu guards the snapshots that the
// bars' decorators read while they render. It is never held across a call
// into mpb, whose render goroutines take it.
type taskBars struct {
	p     *mpb.Progress
	bars  map[string]*mpb.Bar
	mu    sync.Mutex
	tasks map[string]*imagefarmv1.Task
	// order counts a standing order's verified drives ("37 of 200"); its
	// finished drives leave a line each and their bars go, so that a
	// bench of keys plugged in batches stays on one screen.
	order    *mpb.Bar
	verified map[string]bool
	// notes get the lines that tell what happened (a drive verified, why
	// the job waits): above the bars on a terminal, else errw, so that a
	// watch in a log still says them.
	notes   io.Writer
	waiting string // why the job waits, as last told
}

// newTaskBars shows bars on stderr when it is a terminal; notes go to errw
// when it is not.
func newTaskBars(errw io.Writer) *taskBars {
	out := progressOutput()
	b := &taskBars{
		p:        mpb.New(mpb.WithOutput(out), mpb.WithWidth(30)),
		bars:     map[string]*mpb.Bar{},
		tasks:    map[string]*imagefarmv1.Task{},
		verified: map[string]bool{},
		notes:    errw,
	}
	if out != io.Discard {
		b.notes = b.p
	}
	return b
}

// showWaiting tells why the job waits when that changed.
func (b *taskBars) showWaiting(job *imagefarmv1.Job) {
	why := waitingReason(job)
	if why == b.waiting {
		return
	}
	if b.waiting = why; why != "" {
		b.notice("waiting: %s", why)
	}
}

func (b *taskBars) sync(job *imagefarmv1.Job) {
	b.showWaiting(job)
	if so := job.GetTargets().GetStandingOrder(); so != nil && b.order == nil {
		b.order = b.p.AddBar(int64(so.GetCount()),
			mpb.PrependDecorators(decor.Name("standing order", decor.WCSyncSpaceR),
				decor.CountersNoUnit("%d of %d drives verified", decor.WCSyncSpaceR)))
	}
	for _, t := range job.GetTasks() {
		b.update(t)
	}
}

func (b *taskBars) event(ev *imagefarmv1.JobEvent) error {
	if job := ev.GetJob(); job != nil {
		b.showWaiting(job)
		return nil
	}
	t := ev.GetTask()
	if t == nil {
		return nil
	}
	if ev.GetKind() == imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
		// Progress is sampled apart from the stored events and may lag a
		// task's final state; a final bar stays as it ended.
		b.mu.Lock()
		known := b.tasks[t.GetId()]
		b.mu.Unlock()
		if known.GetState().Final() {
			return nil
		}
	}
	b.update(t)
	return nil
}

func (b *taskBars) notice(format string, args ...any) {
	fmt.Fprintln(b.notes, oneLine(fmt.Sprintf(format, args...)))
}

// update shows a task's new snapshot, adding its bar when it is new.
func (b *taskBars) update(t *imagefarmv1.Task) {
	b.mu.Lock()
	b.tasks[t.GetId()] = t
	b.mu.Unlock()
	bar, ok := b.bars[t.GetId()]
	if !ok {
		bar = b.add(t)
		b.bars[t.GetId()] = bar
	}
	name := t.GetNodeId() + "/" + cmp.Or(t.GetSlotLabel(), t.GetDrive().GetId())
	switch t.GetState() {
	case imagefarmv1.TaskState_TASK_STATE_DONE:
		bar.SetTotal(int64(t.GetBytesTotal()), true)
		if b.order != nil && !b.verified[t.GetId()] {
			b.verified[t.GetId()] = true
			b.order.Increment()
			b.notice("%s: %s verified", name, t.GetDrive().GetSerial())
		}
	case imagefarmv1.TaskState_TASK_STATE_FAILED, imagefarmv1.TaskState_TASK_STATE_CANCELED, imagefarmv1.TaskState_TASK_STATE_LOST:
		if b.order != nil && !bar.Aborted() {
			b.notice("%s: %s %s: %s", name, t.GetDrive().GetSerial(), enumName(t.GetState()), t.GetFailure().GetMessage())
		}
		bar.Abort(b.order != nil)
	default:
		bar.SetTotal(int64(t.GetBytesTotal()), false)
		bar.SetCurrent(int64(t.GetBytesDone()))
	}
}

// add makes a task's bar; its decorators read the task's latest snapshot.
func (b *taskBars) add(t *imagefarmv1.Task) *mpb.Bar {
	id := t.GetId()
	show := func(f func(*imagefarmv1.Task) string) decor.Decorator {
		return decor.Any(func(decor.Statistics) string {
			b.mu.Lock()
			defer b.mu.Unlock()
			return f(b.tasks[id])
		}, decor.WCSyncSpaceR)
	}
	name := t.GetNodeId() + "/" + cmp.Or(t.GetSlotLabel(), t.GetDrive().GetId())
	var opts []mpb.BarOption
	if b.order != nil {
		opts = append(opts, mpb.BarRemoveOnComplete())
	}
	return b.p.AddBar(0, append(opts,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR),
			show(func(t *imagefarmv1.Task) string { return enumName(t.GetState()) }),
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			show(func(t *imagefarmv1.Task) string { return fmt.Sprintf("%.1f MB/s", float64(t.GetBytesPerSecond())/1e6) }),
			show(func(t *imagefarmv1.Task) string {
				switch {
				case t.GetState().Final():
					return "" // final: nothing left to wait for
				case t.GetEta() == nil:
					return "ETA -"
				}
				return "ETA " + t.GetEta().AsDuration().Round(time.Second).String()
			})),
	)...)
}

// close ends the bars of tasks that are not final and waits for the last
// render.
func (b *taskBars) close() {
	for _, bar := range b.bars {
		bar.Abort(false)
	}
	if b.order != nil {
		b.order.Abort(false)
	}
	b.p.Wait()
}
