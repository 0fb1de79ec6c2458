package imager_test

import (
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// phases records the phases each drive or task reported.
type phases struct {
	mu   sync.Mutex
	seen map[int][]imager.Phase
}

func (p *phases) record(i int, phase imager.Phase, _, _ int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[int][]imager.Phase{}
	}
	if s := p.seen[i]; len(s) == 0 || s[len(s)-1] != phase {
		p.seen[i] = append(s, phase)
	}
}

func (p *phases) of(i int) []imager.Phase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[i]
}

// TestCheckCapacityPassesHonestLoopDevices probes two real loop devices
// (O_DIRECT, exclusive) before writing them: both hold all they advertise,
// and are then imaged and verified as without the check.
func TestCheckCapacityPassesHonestLoopDevices(t *testing.T) {
	testenv.RequireRoot(t)
	const size = 64 << 20
	b := newBench(t, 24*chunkSize+4096)
	var ts []imager.Target
	var loops []*testenv.Loop
	for range 2 {
		tg, l := loopTarget(t, size)
		ts, loops = append(ts, tg), append(loops, l)
	}
	var ph phases
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	for i, r := range b.write(t, t.Context(), ts, imager.WriteOptions{CheckCapacity: true, Progress: ph.record}) {
		if r.Phase != imager.PhaseVerified || r.Capacity == nil || r.Capacity.Usable != size || r.ReadBack != "direct" {
			t.Errorf("loop %d: %s, capacity %+v (%v); want verified with O_DIRECT read-back, all %d bytes usable", i, r.Phase, r.Capacity, r.Err, size)
		}
		if got := ph.of(i); len(got) < 2 || got[0] != imager.PhaseFetching || got[1] != imager.PhaseChecking || !slices.Contains(got, imager.PhaseWriting) {
			t.Errorf("loop %d went through %v, want fetching, checking, then writing", i, got)
		}
		if got := testenv.SHA256(t, loops[i].Path, b.m.Size); got != want {
			t.Errorf("loop %d holds sha256 %s, the image %s", i, got, want)
		}
	}
}

// TestRunTasksFailsOnlyTheFakeKey runs a job's three tasks with
// check_capacity on real loop devices, one of which is a counterfeit that
// advertises 64 MiB, holds 16 MiB and wraps, so the 24 MiB image would not
// fit: a loop device over a FUSE file that wraps (real parts only; the
// block-layer double is in capacity_test.go). That task fails
// FAKE_CAPACITY naming both sizes, with nothing of the image written; the
// others are imaged.
func TestRunTasksFailsOnlyTheFakeKey(t *testing.T) {
	testenv.RequireRoot(t)
	const size, real, victim = 64 << 20, 16 << 20, 1
	b := newBench(t, 24<<20)
	t.Run("loop device over a FUSE file", func(t *testing.T) {
		_, drives, cfg := loopDrives(t, 2, size)
		k := testenv.NewFakeKey(t, size, real)
		drives = slices.Insert(drives, victim, discovered(t, k.Path))
		cfg.Allow = append(cfg.Allow, k.Path)
		runFakeKeyJob(t, b, imager.NewWriter(imager.WriterConfig{Catalog: b.cat, Log: slog.New(slog.DiscardHandler)}), drives, cfg, victim, real)
	})
}

// runFakeKeyJob writes b's image to drives with check_capacity and checks
// that the victim's task alone failed FAKE_CAPACITY, never written.
func runFakeKeyJob(t *testing.T, b *bench, w *imager.Writer, drives []drive.Drive, cfg drive.Config, victim int, real int64) {
	t.Helper()
	tasks := tasksFor(b, drives)
	for _, task := range tasks {
		task.Options = &imagefarmv1.JobOptions{CheckCapacity: true}
	}
	var ph phases
	results := w.RunTasks(t.Context(), b.digest, tasks, cfg, ph.record, nil)
	r, f := results[victim], results[victim].GetFailure()
	if r.GetState() != imagefarmv1.TaskState_TASK_STATE_FAILED || f.GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_FAKE_CAPACITY ||
		f.GetOffset() != uint64(real) || r.GetBytesWritten() != 0 ||
		!strings.Contains(f.GetMessage(), "advertises 67 MB but holds only 17 MB (16777216 bytes)") {
		t.Errorf("task of the fake key: %v; want FAILED, FAKE_CAPACITY at offset %d naming both sizes, nothing written", r, real)
	}
	if got := ph.of(victim); !slices.Equal(got, []imager.Phase{imager.PhaseFetching, imager.PhaseChecking, imager.PhaseFailed}) {
		t.Errorf("the fake key went through %v, want fetching, checking, failed: never written", got)
	}
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	for i, r := range results {
		if i == victim {
			continue
		}
		if r.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || r.GetVerifiedDigest() != b.digest {
			t.Errorf("drive %d beside the fake: %v, want DONE verified %s", i, r, b.digest)
		}
		if got := testenv.SHA256(t, drives[i].Path, b.m.Size); got != want {
			t.Errorf("drive %d beside the fake holds sha256 %s, the image %s", i, got, want)
		}
	}
}

// discovered is the drive at path as discovery sees it.
func discovered(t *testing.T, path string) drive.Drive {
	t.Helper()
	drives, err := drive.Discover(drive.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := drive.Find(drives, path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCapacityProbeFigures times the probe on sparse loop devices of 1 and
// 8 GiB, honest and counterfeit, and logs the figures (run by
// tests/bench/capacity.sh). Only what the probe finds is checked, not how
// fast: this is a noisy machine.
func TestCapacityProbeFigures(t *testing.T) {
	testenv.RequireRoot(t)
	const runs = 5
	for _, tc := range []struct {
		name   string
		usable int64 // what the probe must find
		dev    func(t *testing.T) imager.Device
	}{
		{"1 GiB loop, honest", 1 << 30, func(t *testing.T) imager.Device { return openDirect(t, testenv.NewLoop(t, 1<<30).Path) }},
		{"8 GiB loop, honest", 8 << 30, func(t *testing.T) imager.Device { return openDirect(t, testenv.NewLoop(t, 8<<30).Path) }},
		{"8 GiB loop over FUSE, wraps at 1 GiB", 1 << 30, func(t *testing.T) imager.Device {
			return openDirect(t, testenv.NewFakeKey(t, 8<<30, 1<<30).Path)
		}},
		{"8 GiB loop, drops past 3 GiB", 3 << 30, func(t *testing.T) imager.Device {
			return &fakeKey{Device: openDirect(t, testenv.NewLoop(t, 8<<30).Path), real: 3 << 30, advertised: 8 << 30, mode: dropsZeros}
		}},
	} {
		dev := tc.dev(t)
		var secs []float64
		var c imager.Capacity
		for range runs { // each run draws a new nonce: the last run's sentinels count for nothing
			c, _ = imager.ProbeCapacity(t.Context(), dev, nil)
			if c.Usable != tc.usable {
				t.Fatalf("%s: ProbeCapacity = %+v, want %d usable", tc.name, c, tc.usable)
			}
			secs = append(secs, c.Seconds)
		}
		sort.Float64s(secs)
		t.Logf("%-38s median %5.1f ms (min %.1f, max %.1f, %d runs), %d sentinels, %d KiB written, usable %s",
			tc.name, secs[runs/2]*1e3, secs[0]*1e3, secs[runs-1]*1e3, runs, c.Probes, c.BytesWritten>>10, humanize.IBytes(uint64(c.Usable)))
	}
}

// openDirect opens a block device exclusively with O_DIRECT, as drives
// are, until the test ends (before its loop device is detached).
func openDirect(t *testing.T, path string) imager.Device {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev := imager.NewFileDevice(f, true)
	t.Cleanup(func() { dev.Close() })
	return dev
}
