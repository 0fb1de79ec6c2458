package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// connectLimit is how many simulated imagers say Hello at once.
const connectLimit = 16

// errTimeout ends a run whose tasks did not all finish in time; the
// figures measured until then are still printed.
var errTimeout = errors.New("not every task finished before -timeout")

// errChecks ends a run that finished but saw the controller misbehave.
var errChecks = errors.New("checks failed: see the lines above")

func run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "imagefarm-sbench.")
		if err != nil {
			return err
		}
		cfg.Dir = dir
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	if _, err := pushImage(ctx, cfg); err != nil {
		return err
	}
	ns, err := startNATS(ctx, cfg.NATSBin, cfg.Dir)
	if err != nil {
		return err
	}
	defer ns.stop()
	tls, err := newFarmTLS(filepath.Join(cfg.Dir, "pki"))
	if err != nil {
		return err
	}
	ctrl, addr, err := startController(ctx, cfg, tls, ns.url)
	if err != nil {
		return err
	}
	defer ctrl.stop()
	creds, err := tls.creds("")
	if err != nil {
		return err
	}
	bearer, err := adminToken(cfg)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(bearer))
	if err != nil {
		return err
	}
	defer conn.Close()
	b := &bench{cfg: cfg, rec: newRecorder(cfg), api: imagefarmv1.NewImageFarmServiceClient(conn), ctrl: ctrl, nats: ns, addr: addr, tls: tls}
	return b.run(ctx)
}

// bench is one run against a started controller.
type bench struct {
	cfg  Config
	rec  *recorder
	api  imagefarmv1.ImageFarmServiceClient
	ctrl *proc
	nats *natsServer
	addr string
	tls  *farmTLS
	m    measures
}

// measures are the figures taken along the run.
type measures struct {
	ctrlStart, ctrlConnected, ctrlEnd usage // the controller's, at those points
	natsStart, natsEnd                usage
	connect                           time.Duration // until every node's Hello was answered
	end                               time.Time     // when the last job was complete, or the timeout
	finished                          bool
	listJobs, listDrives              time.Duration
	jobs                              []*imagefarmv1.Job
	overAssigned                      []*imagefarmv1.Job   // the first few, with their tasks
	created                           map[string]time.Time // task id -> create time, of second tasks on a key
	getJob                            []time.Duration      // GetJob of the largest job, timed after the run
	getJobTasks                       int
	verifyErr                         error
}

func (b *bench) run(ctx context.Context) error {
	b.m.ctrlStart, b.m.natsStart = b.usage()
	farmCtx, stopFarm := context.WithCancel(ctx)
	defer stopFarm()
	g, gctx := errgroup.WithContext(farmCtx)
	if err := b.connect(gctx, g); err != nil {
		stopFarm()
		return errors.Join(err, g.Wait())
	}
	g.Go(func() error { return b.submitAll(gctx) })
	g.Go(func() error { return b.printProgress(gctx) })
	err := b.await(gctx)
	b.m.ctrlEnd, b.m.natsEnd = b.usage()
	if err == nil || errors.Is(err, errTimeout) {
		b.verify(ctx)
	}
	stopFarm()
	if gerr := g.Wait(); gerr != nil && !errors.Is(gerr, context.Canceled) {
		err = errors.Join(err, gerr)
	}
	if (err == nil || errors.Is(err, errTimeout)) && !b.report(os.Stdout) {
		err = errors.Join(err, errChecks)
	}
	return err
}

// connect starts every simulated imager in g and waits until the
// controller has answered all their Hellos.
func (b *bench) connect(ctx context.Context, g *errgroup.Group) error {
	start := time.Now()
	greeted := make(chan struct{}, b.cfg.Nodes)
	slots := make(chan struct{}, connectLimit)
	for i := range b.cfg.Nodes {
		im := newSimImager(fmt.Sprintf("n%03d", i), &b.cfg, b.rec)
		creds, err := b.tls.creds(im.id)
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("imagers connecting: %w", context.Cause(ctx))
		}
		g.Go(func() error {
			return im.run(ctx, b.addr, creds, b.nats.url, func() { <-slots; greeted <- struct{}{} })
		})
	}
	for range b.cfg.Nodes {
		select {
		case <-greeted:
		case <-ctx.Done():
			return fmt.Errorf("imagers connecting: %w", context.Cause(ctx))
		}
	}
	b.m.connect = time.Since(start)
	b.m.ctrlConnected, _ = b.usage()
	return nil
}

// submitAll submits standing orders over the pool, each for JobCount
// tasks, while fewer than Window tasks are submitted and not done.
func (b *bench) submitAll(ctx context.Context) error {
	for n := 0; n < b.cfg.Tasks; {
		count := min(b.cfg.JobCount, b.cfg.Tasks-n)
		if err := b.rec.reserve(ctx, count); err != nil {
			return nil
		}
		start := time.Now()
		if n == 0 {
			b.rec.started(start)
		}
		resp, err := b.api.SubmitJob(ctx, &imagefarmv1.SubmitJobRequest{ImageRef: "bench:1",
			RequestId: fmt.Sprintf("bench-%d", n), Labels: map[string]string{"bench": "schedule"},
			Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{
				Count: uint32(count), Selector: &imagefarmv1.Selector{Pool: "bench"}}}}})
		if err != nil {
			return fmt.Errorf("submit job %d: %w", n/b.cfg.JobCount, err)
		}
		b.rec.submitted(resp.GetJob().GetId(), submit{start: start, end: time.Now(), count: count})
		n += count
	}
	return nil
}

// await waits for the last task, the timeout or the end of ctx.
func (b *bench) await(ctx context.Context) error {
	timeout := time.NewTimer(b.cfg.Timeout)
	defer timeout.Stop()
	select {
	case <-b.rec.allDone:
		b.m.finished = true
		b.m.end = time.Now()
		return nil
	case <-timeout.C:
		b.m.end = time.Now()
		return errTimeout
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// verify reads every job back through the API, timing the listings,
// which read every task and every drive the way a scheduling pass does.
func (b *bench) verify(ctx context.Context) {
	start := time.Now()
	var token string
	for {
		resp, err := b.api.ListJobs(ctx, &imagefarmv1.ListJobsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			b.m.verifyErr = err
			return
		}
		b.m.jobs = append(b.m.jobs, resp.GetJobs()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	b.m.listJobs = time.Since(start)
	b.probeGetJob(ctx)
	start = time.Now()
	if _, err := b.api.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{}); err != nil {
		b.m.verifyErr = err
	}
	b.m.listDrives = time.Since(start)
	b.m.created = map[string]time.Time{}
	rw := b.rec.rewritten()
	for _, x := range rw[:min(len(rw), 6)] {
		resp, err := b.api.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: x.second.job})
		for _, t := range resp.GetJob().GetTasks() {
			if err == nil && t.GetId() == x.second.task {
				b.m.created[t.GetId()] = t.GetCreateTime().AsTime()
			}
		}
	}
	over := slices.Sorted(maps.Keys(b.rec.overAssigned()))
	for _, id := range over[:min(len(over), 3)] {
		if resp, err := b.api.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: id}); err == nil {
			b.m.overAssigned = append(b.m.overAssigned, resp.GetJob())
		}
	}
}

// probeGetJob times GetJob of the largest job: the store read that the
// controller makes for every assignment and every result.
func (b *bench) probeGetJob(ctx context.Context) {
	var largest *imagefarmv1.Job
	for _, j := range b.m.jobs {
		if largest == nil || j.GetTargets().GetStandingOrder().GetCount() > largest.GetTargets().GetStandingOrder().GetCount() {
			largest = j
		}
	}
	for range 10 {
		start := time.Now()
		resp, err := b.api.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: largest.GetId()})
		if err != nil {
			return
		}
		b.m.getJob = append(b.m.getJob, time.Since(start))
		b.m.getJobTasks = len(resp.GetJob().GetTasks())
	}
}

func (b *bench) usage() (ctrl, nats usage) {
	ctrl, _ = procUsage(b.ctrl.pid())
	if b.nats.proc != nil {
		nats, _ = procUsage(b.nats.proc.pid())
	}
	return ctrl, nats
}

// printProgress prints a line on stderr every Progress interval.
func (b *bench) printProgress(ctx context.Context) error {
	if b.cfg.Progress <= 0 {
		return nil
	}
	t := time.NewTicker(b.cfg.Progress)
	defer t.Stop()
	start := time.Now()
	prevDone, prevCPU := 0, b.m.ctrlConnected.cpu
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		assigned, done := b.rec.progress()
		u, _ := b.usage()
		fmt.Fprintf(os.Stderr, "%6.0fs  assigned %6d  done %6d/%d  %6.1f tasks/s  controller CPU %3.0f%%  RSS peak %d MiB\n",
			time.Since(start).Seconds(), assigned, done, b.cfg.Tasks, float64(done-prevDone)/b.cfg.Progress.Seconds(),
			100*(u.cpu-prevCPU).Seconds()/b.cfg.Progress.Seconds(), u.peakRSS>>20)
		prevDone, prevCPU = done, u.cpu
	}
}
