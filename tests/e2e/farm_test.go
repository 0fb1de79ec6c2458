// Package e2e runs the farm as separate processes, the way it is deployed:
// a NATS server, the controller and two imagers, all built from this
// repository and talking over 127.0.0.1, with virtual drives.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var (
	bin         struct{ imagefarm, nats string }
	minioServer testenv.SharedMinIO
	runE2E      = flag.Bool("e2e", false, "run the end-to-end tests (about 6 minutes on 2 cores); without it they skip, so that a plain go test ./... stays short (scripts/test.sh gives -e2e)")
)

// requireE2E skips the test unless -e2e was given.
func requireE2E(t *testing.T) {
	t.Helper()
	if !*runE2E {
		t.Skip("the end-to-end suite runs only with -e2e: go test -race -count=1 ./tests/e2e/ -e2e (scripts/test.sh runs it)")
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if !*runE2E && *soakFor <= 0 { // every test skips: build nothing
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "imagefarm-e2e-bin-")
	if err == nil {
		bin.imagefarm, bin.nats = filepath.Join(dir, "imagefarm"), filepath.Join(dir, "nats-server")
		err = build(bin.imagefarm, "github.com/imagefarm/imagefarm/cmd/imagefarm")
	}
	if err == nil {
		err = build(bin.nats, "github.com/nats-io/nats-server/v2")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		os.Exit(1)
	}
	code := m.Run()
	minioServer.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

func TestJobOverSixDrivesOnTwoNodes(t *testing.T) {
	requireE2E(t)
	f := startFarm(t, map[string]int{"n1": 3, "n2": 3})
	img := f.pushImage("e2e:1", 20<<20)
	args := []string{"job", "submit", "e2e:1", "--watch"}
	for _, n := range []string{"n1", "n2"} {
		for i := 1; i <= 3; i++ {
			args = append(args, "--drive", fmt.Sprintf("%s/virt-d%d.img", n, i))
		}
	}
	out, code := f.cli(args...)
	if code != 0 || !strings.Contains(out, "SUCCEEDED: 6 of 6") {
		t.Fatalf("job submit --watch exited %d:\n%s", code, out)
	}
	want := testenv.SHA256(t, img, -1)
	for _, n := range []string{"n1", "n2"} {
		for i := 1; i <= 3; i++ {
			if got := testenv.SHA256(t, filepath.Join(f.dir, n, fmt.Sprintf("d%d.img", i)), 20<<20); got != want {
				t.Errorf("%s/d%d holds sha256 %s, the image %s", n, i, got, want)
			}
		}
	}
}

// TestStandingOrderTakesDrivesInsertedLater plugs three keys into a bench
// after a standing order for 5 drives: each must be taken (a task assigned
// on it) within 2 seconds of appearing, and the order must finish.
func TestStandingOrderTakesDrivesInsertedLater(t *testing.T) {
	requireE2E(t)
	const within = 2 * time.Second
	const slack = time.Second // a loaded 2-core machine: the 50 ms poll, the RPC, the scheduler's turn
	f := startFarmWith(t, farmConfig{nodes: map[string]int{"n1": 2}, driveSize: 8 << 20})
	f.pushImage("e2e:1", 4<<20)
	id := f.submit(standingOrder("e2e:1", 5))
	var took []time.Duration
	for i := 3; i <= 5; i++ { // keys plugged in after the order, one at a time
		drive := fmt.Sprintf("virt-d%d.img", i)
		f.addDrive("n1", fmt.Sprintf("d%d.img", i))
		inserted := time.Now()
		testenv.Eventually(f.t, 30*time.Second, "task on n1/"+drive, func() bool {
			return countTasks(f.job(id), "n1", func(t *imagefarmv1.Task) bool {
				return t.GetDrive().GetId() == drive && t.GetState() >= imagefarmv1.TaskState_TASK_STATE_ASSIGNED
			}) > 0
		})
		took = append(took, time.Since(inserted))
	}
	t.Logf("standing order: drive inserted to task assigned %v (limit %v + %v slack)", took, within, slack)
	for i, d := range took {
		if d > within+slack {
			t.Errorf("n1/virt-d%d.img was taken %v after it was inserted, want within %v", i+3, d, within)
		}
	}
	job := waitFinal(t, f, id)
	if job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED || job.GetTaskCounts().GetDone() != 5 {
		t.Errorf("standing order ended %v with %v, want SUCCEEDED with 5 done", job.GetState(), job.GetTaskCounts())
	}
	t.Logf("invariants hold: %v", f.checkInvariants([]string{id}))
}

// TestCancelEndsTasksCanceled cancels, through the CLI, a job whose two
// tasks are writing (the store is throttled so that they still are): both
// tasks must be CANCELED within a second, the job CANCELED, the imager must
// close the drives, and the drives must be available for the next job.
func TestCancelEndsTasksCanceled(t *testing.T) {
	requireE2E(t)
	const within = time.Second
	const slack = 2 * time.Second // a loaded 2-core machine: the CLI's start, the 50 ms poll
	drives := []string{"virt-d1.img", "virt-d2.img"}
	f, _ := throttled(t, farmConfig{nodes: map[string]int{"n1": 2}, driveSize: 20 << 20}, 512<<10)
	f.pushImage("e2e:1", 16<<20)
	id := f.submit(drivesJob("e2e:1", "n1/"+drives[0], "n1/"+drives[1]))
	testenv.Eventually(f.t, 60*time.Second, "2 tasks writing", func() bool {
		return countTasks(f.job(id), "n1", func(t *imagefarmv1.Task) bool { return t.GetState() == imagefarmv1.TaskState_TASK_STATE_WRITING }) == 2
	})
	t0 := time.Now()
	if out, code := f.cli("job", "cancel", id); code != 0 {
		t.Fatalf("job cancel exited %d: %s", code, out)
	}
	ran := time.Since(t0)
	var job *imagefarmv1.Job
	testenv.Eventually(f.t, 30*time.Second, "every task of job "+id+" CANCELED", func() bool {
		job = f.job(id)
		return len(job.GetTasks()) > 0 && countTasks(job, "", func(t *imagefarmv1.Task) bool { return t.GetState() == imagefarmv1.TaskState_TASK_STATE_CANCELED }) == len(job.GetTasks())
	})
	canceled := time.Since(t0)
	if len(job.GetTasks()) != len(drives) {
		t.Errorf("job %s has %d tasks, want %d", id, len(job.GetTasks()), len(drives))
	}
	if canceled > within+slack {
		t.Errorf("tasks CANCELED %v after job cancel was run, want within %v", canceled, within)
	}
	if job = waitFinal(t, f, id); job.GetState() != imagefarmv1.JobState_JOB_STATE_CANCELED {
		t.Errorf("job %v after cancel, want CANCELED", job.GetState())
	}
	closed := f.waitClosed(job).Sub(t0)
	if closed > within+slack {
		t.Errorf("the imager closed the drives %v after job cancel was run, want within %v", closed, within)
	}
	testenv.Eventually(f.t, 10*time.Second, "drives available after cancel", func() bool {
		resp, err := f.api.ListDrives(context.Background(), &imagefarmv1.ListDrivesRequest{})
		free := 0
		for _, d := range resp.GetDrives() {
			if err == nil && d.GetNodeId() == "n1" && slices.Contains(drives, d.GetId()) &&
				d.GetState() == imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE && d.GetTaskId() == "" {
				free++
			}
		}
		return free == len(drives)
	})
	t.Logf("cancel mid-write: job cancel ran %v; tasks CANCELED %v, drives closed by the imager %v after it started (limit %v + %v slack); %v",
		ran.Round(time.Millisecond), canceled.Round(time.Millisecond), closed.Round(time.Millisecond), within, slack, f.checkInvariants([]string{id}))
}

// waitClosed waits until the imagers' logs say every task of job closed
// its drive, and returns when the last one was closed.
func (f *farm) waitClosed(job *imagefarmv1.Job) time.Time {
	f.t.Helper()
	var last time.Time
	testenv.Eventually(f.t, 10*time.Second, "drives of job "+job.GetId()+" closed", func() bool {
		polled, closed := time.Now(), 0
		for _, o := range f.driveOpens() {
			for _, task := range job.GetTasks() {
				if o.task == task.GetId() && o.to.Before(polled) { // an open not closed yet ends at the read
					closed++
					if o.to.After(last) {
						last = o.to
					}
				}
			}
		}
		return closed == len(job.GetTasks())
	})
	return last
}

// TestWatchReconnectedMidJobSeesEveryEventOnce drops a watch after every
// two events while the job runs (the store is throttled so that it still
// does) and resumes from the revision after the last one seen: the watch
// must never send an event before that revision nor one twice, and must see
// the same events as one unbroken watch.
func TestWatchReconnectedMidJobSeesEveryEventOnce(t *testing.T) {
	requireE2E(t)
	f, _ := throttled(t, farmConfig{nodes: map[string]int{"n1": 2}, driveSize: 20 << 20}, 1<<20)
	f.pushImage("e2e:1", 8<<20)
	id := f.submit(drivesJob("e2e:1", "n1/virt-d1.img", "n1/virt-d2.img"))
	var seen []uint64
	from, midJob, ended := uint64(1), 0, false
	for attempt := 0; !ended && attempt < 100; attempt++ {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := f.api.WatchJob(ctx, &imagefarmv1.WatchJobRequest{JobId: id, FromRevision: from})
		if err != nil {
			t.Fatal(err)
		}
		for got := 0; got < 2; {
			resp, err := w.Recv()
			if err == io.EOF {
				ended = true
				break
			}
			if err != nil {
				t.Fatalf("watch from revision %d: %v", from, err)
			}
			ev := resp.GetEvent()
			if ev.GetKind() == imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
				continue // not stored, no revision of its own
			}
			if r := ev.GetRevision(); r < from || slices.Contains(seen, r) {
				t.Errorf("watch resumed from revision %d sent revision %d (seen %v)", from, r, seen)
			}
			seen = append(seen, ev.GetRevision())
			from = ev.GetRevision() + 1
			got++
		}
		if !ended && !f.job(id).GetState().Final() {
			midJob++
		}
		cancel() // the stream dropped; the next turn resumes
	}
	if !ended {
		t.Fatalf("the watch of job %s never ended", id)
	}
	if midJob == 0 {
		t.Errorf("no stream was dropped while job %s ran", id)
	}
	all := revisions(f.events(id))
	if !slices.Equal(seen, all) {
		t.Errorf("reconnecting watch saw revisions %v, one unbroken watch %v", seen, all)
	}
	if job := f.job(id); job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("job %s ended %v, want SUCCEEDED", id, job.GetState())
	}
	t.Logf("watch dropped %d times mid-job, saw %d events once each", midJob, len(seen))
}
