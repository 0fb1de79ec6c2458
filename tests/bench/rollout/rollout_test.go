package rollout

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// env is an integer knob of the run.
func env(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// simDevice is a netbooting machine that speaks DeviceService as the
// deploy environment does, and writes nothing: an assignment is answered
// with a DONE result verified against the assignment's digest.
type simDevice struct {
	mac   string
	ident *imagefarmv1.DeviceIdentity
}

func newDevices(models, perModel int) ([]*simDevice, []string) {
	var devs []*simDevice
	var names []string
	for m := range models {
		names = append(names, fmt.Sprintf("Bench Model %02d", m))
		for i := range perModel {
			n := m*perModel + i
			devs = append(devs, &simDevice{mac: fmt.Sprintf("52:54:01:%02x:%02x:%02x", n>>16&0xff, n>>8&0xff, n&0xff),
				ident: &imagefarmv1.DeviceIdentity{Uuid: fmt.Sprintf("4c4c4544-0000-1000-8000-%012d", n), Serial: fmt.Sprintf("BENCH%05d", n),
					Vendor: "Bench", Model: names[m]}})
		}
	}
	return devs, names
}

// client is what the devices and the boot service call.
type client struct {
	boot   imagefarmv1.DeviceServiceClient // the boot service's token
	device imagefarmv1.DeviceServiceClient // no token
	conn   *grpc.ClientConn
}

// boot runs one network boot of d: PlanBoot and, when it says deploy, an
// enrollment and its task. It returns whether d got a task.
func (c client) netboot(ctx context.Context, d *simDevice) (bool, error) {
	plan, err := c.boot.PlanBoot(ctx, &imagefarmv1.PlanBootRequest{Mac: d.mac, Arch: "x86_64-efi"})
	if err != nil || plan.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		return false, err
	}
	resp, err := c.device.Enroll(ctx, &imagefarmv1.EnrollRequest{BootToken: plan.GetBootToken(), BootMac: d.mac, Identity: d.ident,
		Arch: "x86_64-efi", Disks: []*imagefarmv1.Drive{{Id: "nvme0n1", Serial: "DISK" + d.ident.GetSerial(), SizeBytes: 256 << 30,
			Transport: imagefarmv1.Transport_TRANSPORT_NVME, Model: "Bench NVMe"}}})
	if err != nil || resp.GetAssignment() == nil {
		return false, err
	}
	a := resp.GetAssignment()
	stream, err := c.device.Report(ctx, grpc.PerRPCCredentials(tokens.Bearer{Secret: resp.GetCredential()}))
	if err != nil {
		return true, err
	}
	res := &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_DONE,
		VerifiedDigest: a.GetManifestDigest(), BytesWritten: uint64(len(farm.Image))}
	if err := stream.Send(&imagefarmv1.ReportRequest{Seq: 1, Body: &imagefarmv1.ReportRequest_TaskResult{TaskResult: res}}); err != nil {
		return true, err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, err
		}
		if m.GetAck().GetSeq() >= 1 {
			return true, stream.CloseSend()
		}
	}
}

// cpu is the process's user and system CPU time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// figures is one run's result.
type figures struct {
	toLast time.Duration // from the approvals (or the submits) to the last assignment
	cpu    time.Duration // process CPU over that time
}

// fleet netboots every device that has no task yet, every retry, until
// want devices got one; it returns when the last got it.
func fleet(ctx context.Context, c client, devs []*simDevice, want int, retry time.Duration) (time.Time, error) {
	var mu sync.Mutex
	got, last := 0, time.Time{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	done := make([]bool, len(devs))
	for got < want {
		for i, d := range devs {
			mu.Lock()
			skip := done[i]
			mu.Unlock()
			if skip {
				continue
			}
			g.Go(func() error {
				ok, err := c.netboot(gctx, d)
				if ok && err == nil {
					mu.Lock()
					done[i], got, last = true, got+1, time.Now()
					mu.Unlock()
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return last, err
		}
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(64)
		mu.Lock()
		n := got
		mu.Unlock()
		if n >= want {
			break
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(retry):
		}
	}
	return last, nil
}

func start(b *testing.B) (*farm.Farm, client) {
	f := farm.Start(b, farm.Options{PushImage: true, Controller: func(c *controller.Config) {
		c.RolloutTick = 200 * time.Millisecond
		c.HeartbeatTTL = time.Hour
	}})
	op, err := f.API.CreateToken(b.Context(), &imagefarmv1.CreateTokenRequest{Name: "netboot", Role: imagefarmv1.Role_ROLE_OPERATOR})
	if err != nil {
		b.Fatal(err)
	}
	conn := f.Dial(b, f.ClientCreds(b, ""))
	return f, client{boot: imagefarmv1.NewDeviceServiceClient(f.Dial(b, f.ClientCreds(b, ""), f.Bearer(op.GetSecret()))),
		device: imagefarmv1.NewDeviceServiceClient(conn), conn: conn}
}

// know has every device enroll once with no work for it.
func know(b *testing.B, f *farm.Farm, c client, devs []*simDevice) {
	job, err := f.API.SubmitJob(b.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: &imagefarmv1.Targets{
		Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{Model: "Nobody", Count: 1}}}})
	if err != nil {
		b.Fatal(err)
	}
	g, ctx := errgroup.WithContext(b.Context())
	g.SetLimit(64)
	for _, d := range devs {
		g.Go(func() error { _, err := c.netboot(ctx, d); return err })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	f.API.CancelJob(b.Context(), &imagefarmv1.CancelJobRequest{JobId: job.GetJob().GetId()})
}

// rolloutRun: first articles on one device per model, every model
// approved at once, then waves of wave% until every device has the image.
func rolloutRun(b *testing.B, models, perModel, wavePct int, retry time.Duration) figures {
	f, c := start(b)
	devs, names := newDevices(models, perModel)
	know(b, f, c, devs)
	progress("rollout: %d devices known", len(devs))
	for _, n := range names {
		if _, err := f.API.AddModel(b.Context(), &imagefarmv1.AddModelRequest{Model: &imagefarmv1.Model{Name: n, ImageRef: "img:1"}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := f.API.StartRollout(b.Context(), &imagefarmv1.StartRolloutRequest{All: true,
		Policy: &imagefarmv1.RolloutPolicy{WavePercent: uint32(wavePct)}}); err != nil {
		b.Fatal(err)
	}
	var samples []*simDevice
	for m := range models {
		samples = append(samples, devs[m*perModel])
	}
	if _, err := fleet(b.Context(), c, samples, len(samples), retry); err != nil {
		b.Fatal(err)
	}
	for _, d := range samples { // boot back
		c.boot.PlanBoot(b.Context(), &imagefarmv1.PlanBootRequest{Mac: d.mac})
	}
	waitAll(b, f, imagefarmv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL, models)
	progress("rollout: %d first articles passed; approving", models)
	rest := slices.DeleteFunc(slices.Clone(devs), func(d *simDevice) bool { return slices.Contains(samples, d) })
	t0, c0 := time.Now(), cpu()
	for _, n := range names {
		if _, err := f.API.ApproveRollout(b.Context(), &imagefarmv1.ApproveRolloutRequest{Model: n}); err != nil {
			b.Fatal(err)
		}
	}
	last, err := fleet(b.Context(), c, rest, len(rest), retry)
	if err != nil {
		b.Fatal(err)
	}
	fig := figures{toLast: last.Sub(t0), cpu: cpu() - c0}
	progress("rollout: last assignment %v after the approvals", fig.toLast)
	waitAll(b, f, imagefarmv1.RolloutState_ROLLOUT_STATE_DONE, models)
	return fig
}

// ordersRun is the baseline: the same devices taken by one plain device
// order per model, submitted at once.
func ordersRun(b *testing.B, models, perModel int, retry time.Duration) figures {
	f, c := start(b)
	devs, names := newDevices(models, perModel)
	know(b, f, c, devs)
	t0, c0 := time.Now(), cpu()
	for _, n := range names {
		if _, err := f.API.SubmitJob(b.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: &imagefarmv1.Targets{
			Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{Model: n, Count: uint32(perModel)}}}}); err != nil {
			b.Fatal(err)
		}
	}
	last, err := fleet(b.Context(), c, devs, len(devs), retry)
	if err != nil {
		b.Fatal(err)
	}
	progress("baseline: last assignment %v after the submits", last.Sub(t0))
	return figures{toLast: last.Sub(t0), cpu: cpu() - c0}
}

// progress says where a run is, as it goes (b.Logf prints at the end).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format(time.TimeOnly)+" "+format+"\n", args...)
}

func waitAll(b *testing.B, f *farm.Farm, s imagefarmv1.RolloutState, n int) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		resp, err := f.API.ListRollouts(b.Context(), &imagefarmv1.ListRolloutsRequest{All: true})
		if err != nil {
			b.Fatal(err)
		}
		k := 0
		for _, r := range resp.GetRollouts() {
			if r.GetState() == s {
				k++
			}
		}
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d rollouts %v after 10 minutes", k, n, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkRolloutFleet prints, for MODELS models of PER_MODEL devices
// (20 x 100), the time from approving every model's first article to the
// last wave's last assignment and the CPU per device, against the
// baseline of plain device orders for the same devices, each the median
// of RUNS runs. The CPU is the whole process's (controller, embedded
// NATS and the simulated devices' gRPC clients): an upper bound of the
// controller's.
func BenchmarkRolloutFleet(b *testing.B) {
	models, perModel, runs := env("MODELS", 20), env("PER_MODEL", 100), env("RUNS", 3)
	wavePct, retry := env("WAVE_PERCENT", 25), time.Duration(env("RETRY_MS", 1000))*time.Millisecond
	var roll, base []figures
	for range runs {
		roll = append(roll, rolloutRun(b, models, perModel, wavePct, retry))
		base = append(base, ordersRun(b, models, perModel, retry))
	}
	n := time.Duration(models * perModel)
	r, o := median(roll), median(base)
	b.Logf("%d devices, %d models, waves of %d%%, devices netboot again every %v; medians of %d runs", n, models, wavePct, retry, runs)
	b.Logf("rollout: approve to last assignment %v, CPU %v per device", r.toLast.Round(time.Millisecond), (r.cpu / n).Round(time.Microsecond))
	b.Logf("plain device orders (baseline): submit to last assignment %v, CPU %v per device", o.toLast.Round(time.Millisecond), (o.cpu / n).Round(time.Microsecond))
	b.Logf("ratio rollout/baseline: time %.2f, CPU per device %.2f", float64(r.toLast)/float64(o.toLast), float64(r.cpu)/float64(o.cpu))
	b.ReportMetric(r.toLast.Seconds(), "s-approve-to-last")
	b.ReportMetric(float64(r.cpu/n)/1e6, "ms-cpu/device")
}

func median(fs []figures) figures {
	t := make([]time.Duration, len(fs))
	c := make([]time.Duration, len(fs))
	for i, f := range fs {
		t[i], c[i] = f.toLast, f.cpu
	}
	slices.Sort(t)
	slices.Sort(c)
	return figures{toLast: t[len(t)/2], cpu: c[len(c)/2]}
}
