package imager_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

const (
	reasonRemoved = imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_REMOVED
	reasonIO      = imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_IO_ERROR
)

// TestDriveFaultFailsOnlyThatTask writes one image to four loop devices at
// once and, from inside one drive's progress report (so that the fault
// lands in the phase it is meant for however fast or slow the machine),
// pulls it (size 0, as the kernel does to an unplugged disk), makes it
// refuse writes, or shrinks it. That task must fail with a named reason,
// offset and a message naming the device and the cause, never verified,
// while the other drives are held where they are (so its result cannot
// be waiting for theirs); then they must end verified and hold the image,
// read back independently.
func TestDriveFaultFailsOnlyThatTask(t *testing.T) {
	testenv.RequireRoot(t)
	const size = 48 << 20
	const shrunk = size/2 + 64<<10 // inside a chunk: the read there comes back short
	b := newBench(t, size)
	stall := stallChunk(t, b.m, size/3)
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	// A pull is found by the write or read that fails, or, whichever
	// comes first, by the presence check of a drive waiting for the
	// stream, which tries no transfer: then there is no errno (no
	// "write /dev/loopN: no space left on device"), and the message names
	// the device all the same.
	pulled := func(dev string) string {
		return fmt.Sprintf("device %s ended at offset 0 of %d: drive removed or shrunk", dev, size)
	}
	tests := []struct {
		name  string
		phase imager.Phase
		at    int64 // how far the phase is when the fault comes
		stall bool  // the download stalls at, so the drive waits, idle
		fault func(t *testing.T, l *testenv.Loop)
		// The failure is at the first offset the drive refuses: where
		// the phase was, or, for a drive shrunk further on, its new end.
		reason imagefarmv1.FailureReason
		offset func(faultAt int64) int64
		op     string                  // the failure message says "op at offset N: ...cause..."
		cause  func(dev string) string // of the faulty drive's device
	}{{
		name: "pulled mid-write", phase: imager.PhaseWriting, at: size / 3, fault: shrinkTo(0),
		reason: reasonRemoved, offset: sameOffset, op: "write", cause: pulled,
	}, {
		name: "pulled while the download stalls", phase: imager.PhaseWriting, at: stall.Offset, stall: true, fault: shrinkTo(0),
		reason: reasonRemoved, offset: sameOffset, op: "write", cause: pulled,
	}, {
		name: "pulled mid-verify", phase: imager.PhaseVerifying, at: size / 3, fault: shrinkTo(0),
		reason: reasonRemoved, offset: sameOffset, op: "read back",
		cause: func(dev string) string { return pulled(dev) + ": unexpected EOF" },
	}, {
		name: "read-only mid-write", phase: imager.PhaseWriting, at: size / 3, fault: setReadOnly,
		reason: reasonIO, offset: sameOffset, op: "write",
		cause: func(dev string) string { return "write " + dev + ": operation not permitted" },
	}, {
		name: "shrunk mid-verify", phase: imager.PhaseVerifying, at: size / 4, fault: shrinkTo(shrunk),
		reason: reasonRemoved, offset: func(int64) int64 { return shrunk }, op: "read back",
		cause: func(dev string) string {
			return fmt.Sprintf("device %s ended at offset %d of %d: drive removed or shrunk: unexpected EOF", dev, shrunk, size)
		},
	}}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loops, drives, cfg := loopDrives(t, 4, size)
			victim := i % len(loops)
			reported := make(chan struct{})
			cat := b.cat
			if tc.stall {
				cat = storeCatalog(t, &gatedStore{Store: b.cat.Store(), key: chunkKey(stall), open: reported})
			}
			f := fault{victim: victim, phase: tc.phase, at: tc.at, do: func() { tc.fault(t, loops[victim]) }, path: loops[victim].Path}
			w := imager.NewWriter(imager.WriterConfig{Catalog: cat, WriteWhileFetching: tc.stall, Log: slog.New(slog.DiscardHandler)}) // the download stalls mid-write
			run := runWithFault(t, w, b.digest, tasksFor(b, drives), cfg, f, reported)
			t.Logf("%s: fault at %d bytes of %s, made in %v; task failed %v after it (all tasks done in %v)",
				tc.name, run.faultAt, tc.phase, run.inject.Round(time.Millisecond), run.took.Round(time.Microsecond), run.total.Round(time.Millisecond))
			if !run.reportedHeld {
				t.Errorf("faulty drive's task was not reported while the other drives were held: its result waits for theirs")
			}
			if run.held != nil {
				t.Errorf("faulty drive still held when its result came (the others writing on): exclusive open: %v", run.held)
			}
			r, fl := run.results[victim], run.results[victim].GetFailure()
			wantMsg, cause := fmt.Sprintf("%s at offset %d: ", tc.op, tc.offset(run.faultAt)), tc.cause(loops[victim].Path)
			if r.GetState() != imagefarmv1.TaskState_TASK_STATE_FAILED || r.GetVerifiedDigest() != "" || run.verified ||
				fl.GetReason() != tc.reason || fl.Offset == nil || fl.GetOffset() != uint64(tc.offset(run.faultAt)) ||
				!strings.HasPrefix(fl.GetMessage(), wantMsg) || !strings.Contains(fl.GetMessage(), cause) {
				t.Errorf("task of the faulty drive: %v, verified reported %v; want FAILED, never verified, %v at offset %d, saying %q...%q",
					r, run.verified, tc.reason, tc.offset(run.faultAt), wantMsg, cause)
			}
			for j, r := range run.results {
				if j == victim {
					continue
				}
				if r.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || r.GetVerifiedDigest() != b.digest {
					t.Errorf("drive %d beside the faulty one: %v, want DONE verified %s", j, r, b.digest)
				}
				if got := testenv.DeviceSHA256(t, loops[j].Path); got != want {
					t.Errorf("drive %d beside the faulty one holds sha256 %s, the image %s", j, got, want)
				}
			}
		})
	}
}

// TestAgentReportsPulledDriveAtOnce pulls one of two drives an agent
// writes in one batch. The download stalls halfway until the pulled
// drive's task has reached the controller failed: it is reported while
// the other drive is still being written, not when that one is done (it
// could not be done: then no result would come).
func TestAgentReportsPulledDriveAtOnce(t *testing.T) {
	testenv.RequireRoot(t)
	const size = 32 << 20
	b := newBench(t, size)
	loops, drives, cfg := loopDrives(t, 2, size)
	gate := make(chan struct{})
	f := startRig(t, b, cfg, drives, storeCatalog(t, &gatedStore{Store: b.cat.Store(), key: chunkKey(stallChunk(t, b.m, size/2)), open: gate}))
	f.publish(t, f.assignment("job-1_t1", 0, 3), f.assignment("job-1_t2", 1, 3))
	testenv.Eventually(t, waitLong, "writing", func() bool {
		return countState(f.ctl.progress("job-1_t1"), imagefarmv1.TaskState_TASK_STATE_WRITING) > 0
	})
	shrinkTo(0)(t, loops[0])
	pulled := time.Now()
	r := f.ctl.result(t, "job-1_t1")
	took := time.Since(pulled)
	close(gate)
	r2 := f.ctl.result(t, "job-1_t2")
	t.Logf("pulled drive's task FAILED at the controller %v after the pull, while the other waited for the download; that one DONE %v after the pull",
		took.Round(time.Microsecond), time.Since(pulled).Round(time.Millisecond))
	if r.GetState() != imagefarmv1.TaskState_TASK_STATE_FAILED || r.GetFailure().GetReason() != reasonRemoved {
		t.Errorf("result of the pulled drive's task = %v, want FAILED %v", r, reasonRemoved)
	}
	if r2.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || r2.GetVerifiedDigest() != b.digest {
		t.Errorf("result of the other task = %v, want DONE verified %s", r2, b.digest)
	}
	if got, want := testenv.DeviceSHA256(t, loops[1].Path), testenv.SHA256(t, writeFile(t, b.image), -1); got != want {
		t.Errorf("the other drive holds sha256 %s, the image %s", got, want)
	}
}

func sameOffset(faultAt int64) int64 { return faultAt }

// fault is what to do to one task's drive, and when.
type fault struct {
	victim int
	phase  imager.Phase
	at     int64 // bytes of phase done
	do     func()
	path   string // the victim's device, checked to be released when its result comes
}

// faultRun is what runWithFault measured.
type faultRun struct {
	results  []*imagefarmv1.TaskResult
	faultAt  int64         // how far the victim's phase was when the fault came
	inject   time.Duration // how long the fault took to make
	took     time.Duration // from the fault made to the victim's result
	total    time.Duration // RunTasks, all tasks
	verified bool          // the victim reported PhaseVerified, which it must not
	held     error         // opening the victim exclusively when its result came, while the others still ran
	// reportedHeld: the victim's result came while the other drives were
	// held, not after waitLong released them.
	reportedHeld bool
}

// runWithFault runs tasks with w, making f from the victim's goroutine
// once its phase has done f.at bytes: the victim writes or reads nothing
// more until the fault is made. From then on the other drives are held at
// their next progress report until the victim's result is in (reported is
// closed then), so that the result is shown not to wait for theirs: if it
// did, nothing would move until waitLong ended the run.
func runWithFault(t *testing.T, w *imager.Writer, digest string, tasks []*imagefarmv1.TaskAssignment, cfg drive.Config, f fault, reported chan struct{}) faultRun {
	t.Helper()
	var run faultRun
	var once, hold sync.Once
	var faulted, failed time.Time
	made := make(chan struct{})
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	progress := func(task int, p imager.Phase, done, total int64) {
		if task != f.victim {
			select {
			case <-made:
				hold.Do(func() {
					select {
					case <-reported:
					case <-ctx.Done():
					}
				})
			default:
			}
			return
		}
		run.verified = run.verified || p == imager.PhaseVerified
		if p == f.phase && done >= f.at {
			once.Do(func() {
				start := time.Now()
				f.do()
				faulted, run.faultAt, run.inject = time.Now(), done, time.Since(start)
				close(made)
			})
		}
	}
	result := func(task int, _ *imagefarmv1.TaskResult) {
		if task == f.victim {
			failed = time.Now()
			if f.path != "" {
				fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
				if err == nil {
					unix.Close(fd)
				}
				run.held = err
			}
			run.reportedHeld = ctx.Err() == nil
			close(reported)
		}
	}
	start := time.Now()
	run.results = w.RunTasks(ctx, digest, tasks, cfg, progress, result)
	run.total = time.Since(start)
	if faulted.IsZero() {
		t.Fatalf("drive %d never reached %d bytes of %s: no fault made; results %v", f.victim, f.at, f.phase, run.results)
	}
	run.took = failed.Sub(faulted)
	return run
}

// loopDrives attaches n loop devices of size bytes (the image's, so that
// a device's hash is the image's) and returns them, the drives discovery
// sees, and the node config that admits them.
func loopDrives(t *testing.T, n int, size int64) ([]*testenv.Loop, []drive.Drive, drive.Config) {
	t.Helper()
	var loops []*testenv.Loop
	var drives []drive.Drive
	var cfg drive.Config
	for range n {
		l, d := loopDrive(t, size)
		loops, drives, cfg.Allow = append(loops, l), append(drives, d), append(cfg.Allow, l.Path)
	}
	return loops, drives, cfg
}

// tasksFor is one task writing b's image to each drive.
func tasksFor(b *bench, drives []drive.Drive) []*imagefarmv1.TaskAssignment {
	var tasks []*imagefarmv1.TaskAssignment
	for i, d := range drives {
		tasks = append(tasks, &imagefarmv1.TaskAssignment{TaskId: fmt.Sprintf("t%d", i), Epoch: 1, ManifestDigest: b.digest,
			Drive: &imagefarmv1.DriveIdentity{Id: d.ID, Serial: d.Serial, SizeBytes: uint64(d.Size), Model: d.Model}})
	}
	return tasks
}

// shrinkTo truncates a loop device's file to size bytes and makes the
// device follow (losetup -c): reads past the new end find nothing and
// writes there fail. Size 0 is a pulled USB key: sysfs shows size 0.
func shrinkTo(size int64) func(t *testing.T, l *testenv.Loop) {
	return func(t *testing.T, l *testenv.Loop) {
		if err := os.Truncate(l.Backing, size); err != nil {
			t.Errorf("truncate %s: %v", l.Backing, err)
		}
		tool(t, "losetup", "-c", l.Path)
	}
}

// setReadOnly makes a loop device refuse writes from now on, as the
// kernel does to a disk that went bad; it is writable again at cleanup.
func setReadOnly(t *testing.T, l *testenv.Loop) {
	t.Cleanup(func() { testenv.Command(t, "blockdev", "--setrw", l.Path) })
	tool(t, "blockdev", "--setro", l.Path)
}

// tool runs a command from a drive's goroutine, where t.Fatal must not be
// called (testenv.Command would): a failure is reported and the run goes on.
func tool(t *testing.T, name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// gatedStore holds every read of one key until open is closed: a download
// that stalls there.
type gatedStore struct {
	storage.Store
	key  string
	open <-chan struct{}
}

func (s *gatedStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == s.key {
		select {
		case <-s.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Open(ctx, key, off, n)
}

// stallChunk is the first stored chunk from offset from on whose content
// appears nowhere else in m, so that a gate on it stalls the stream there.
func stallChunk(t *testing.T, m *catalog.Manifest, from int64) catalog.Chunk {
	t.Helper()
	for _, ch := range m.Chunks {
		if !ch.Zero && ch.Offset >= from && !slices.ContainsFunc(m.Chunks, func(o catalog.Chunk) bool { return o.ID == ch.ID && o.Offset != ch.Offset }) {
			return ch
		}
	}
	t.Fatalf("no stored chunk with unique content from offset %d", from)
	return catalog.Chunk{}
}

func chunkKey(ch catalog.Chunk) string { return "chunks/" + ch.ID[:2] + "/" + ch.ID }
