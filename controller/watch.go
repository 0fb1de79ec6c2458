package controller

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// progressEvery is how often a watch gets the live progress of running tasks.
const progressEvery = 500 * time.Millisecond

// WatchJob implements ImageFarmService.WatchJob: stored events from the
// revision asked for, then live ones; for one job it ends after the event
// that makes the job final. Live progress is sent every half second as
// TASK_PROGRESS events, which are never stored or replayed.
func (a *apiServer) WatchJob(req *imagefarmv1.WatchJobRequest, stream imagefarmv1.ImageFarmService_WatchJobServer) error {
	ctx := stream.Context()
	if req.GetJobId() != "" {
		if _, err := a.job(ctx, req.GetJobId()); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	var last uint64
	send := func(ev *imagefarmv1.JobEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.GetKind() != imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
			last = ev.GetRevision()
		} else {
			ev.Revision = last
		}
		return stream.Send(&imagefarmv1.WatchJobResponse{Event: ev})
	}
	g, gctx := errgroup.WithContext(ctx)
	watchCtx, stop := context.WithCancel(gctx)
	g.Go(func() error {
		defer stop()
		end := jobEnd{sent: map[string]imagefarmv1.TaskState{}}
		err := a.st.Watch(watchCtx, req.GetJobId(), req.GetFromRevision(), func(ev *imagefarmv1.JobEvent) error {
			if err := send(ev); err != nil {
				return err
			}
			if req.GetJobId() == "" {
				return nil
			}
			if t := ev.GetTask(); t != nil {
				end.sent[t.GetId()] = t.GetState()
			}
			if j := ev.GetJob(); j != nil && j.GetState().Final() && end.record == nil {
				job, err := a.st.GetJob(watchCtx, req.GetJobId())
				if err != nil {
					return err
				}
				end.record = job
				end.timer = time.AfterFunc(jobEndWait, stop) // an event whose append failed may come much later
			}
			if end.done() {
				return state.ErrStopWatch
			}
			return nil
		})
		if end.timer != nil {
			end.timer.Stop()
		}
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	g.Go(func() error { return a.streamProgress(watchCtx, req.GetJobId(), send) })
	return g.Wait()
}

// streamProgress sends the live progress of a job's running tasks.
func (a *apiServer) streamProgress(ctx context.Context, jobID string, send func(*imagefarmv1.JobEvent) error) error {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for _, t := range a.live.progressOf(jobID) {
			ev := &imagefarmv1.JobEvent{Time: now(), Kind: imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS,
				Snapshot: &imagefarmv1.JobEvent_Task{Task: t}}
			if err := send(ev); err != nil {
				return nil // the watch itself reports a broken stream
			}
		}
	}
}

// ListNodes implements ImageFarmService.ListNodes.
func (a *apiServer) ListNodes(ctx context.Context, req *imagefarmv1.ListNodesRequest) (*imagefarmv1.ListNodesResponse, error) {
	if err := cmp.Or(checkEnums("states", req.GetStates()...), ident.Pool(req.GetPool())); err != nil {
		return nil, err
	}
	nodes, err := a.st.ListNodes(ctx, state.NodeFilter{Pool: req.GetPool(), States: req.GetStates()})
	return &imagefarmv1.ListNodesResponse{Nodes: nodes}, err
}

// ListDrives implements ImageFarmService.ListDrives. A selector matches
// as the scheduler's does, so the list previews what a standing order with
// it would take.
func (a *apiServer) ListDrives(ctx context.Context, req *imagefarmv1.ListDrivesRequest) (*imagefarmv1.ListDrivesResponse, error) {
	if err := checkEnums("states", req.GetStates()...); err != nil {
		return nil, err
	}
	var sel *scheduler.Selector
	if req.GetSelector() != nil {
		sel = schedSelector(req.GetSelector())
		if err := scheduler.ValidateSelector(sel); err != nil {
			return nil, err
		}
	}
	nodes, err := a.st.ListNodes(ctx, state.NodeFilter{})
	if err != nil {
		return nil, err
	}
	drives, err := a.st.ListDrives(ctx, "")
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*imagefarmv1.Node, len(nodes))
	for _, n := range nodes {
		byID[n.GetId()] = n
	}
	states := req.GetStates()
	var out []*imagefarmv1.Drive
	for _, d := range drives {
		n := byID[d.GetNodeId()]
		if (len(states) == 0 || slices.Contains(states, d.GetState())) && (sel == nil || sel.Matches(
			&scheduler.Node{ID: d.GetNodeId(), Pool: n.GetPool(), Labels: n.GetLabels()},
			&scheduler.Drive{Size: d.GetSizeBytes(), Removable: d.GetRemovable()})) {
			out = append(out, d)
		}
	}
	return &imagefarmv1.ListDrivesResponse{Drives: out}, nil
}

// jobEndWait bounds how long the watch of an ended job waits for the last
// events of its tasks.
const jobEndWait = 30 * time.Second

// jobEnd says when the watch of one job has sent all there is. A job's
// final event can reach the stream before the last event of one of its
// tasks (each record announces its own changes, and another task's report
// may end the job meanwhile), so the watch ends only once every task of
// the ended job's record has been sent in the state the record holds.
type jobEnd struct {
	sent   map[string]imagefarmv1.TaskState // last state sent, by task id
	record *imagefarmv1.Job                 // the job as stored once its final event was sent
	timer  *time.Timer                      // ends the watch jobEndWait after the job's final event
}

// done reports whether the job's final event and the final events of all
// its tasks have been sent.
func (e *jobEnd) done() bool {
	if e.record == nil {
		return false
	}
	for _, t := range e.record.GetTasks() {
		if e.sent[t.GetId()] != t.GetState() {
			return false
		}
	}
	return true
}
