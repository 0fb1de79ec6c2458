package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var lossRuns = flag.Int("loss-runs", 20, "runs of TestImagerLost: each kills or freezes one imager mid-write")

// throttled starts a farm whose imagers read the store through a fault
// proxy limited to rate bytes per second per connection, so that a task
// lasts long enough to be interrupted. They write while they fetch, so
// that the store's pace is the writes' and a fault lands mid-write (by
// default an imager fetches the whole image first, then writes it from
// its cache at the drives' speed).
func throttled(t *testing.T, cfg farmConfig, rate int64) (*farm, *testenv.FaultProxy) {
	t.Helper()
	proxy := testenv.StartFaultProxy(t, minioServer.Get(t).Endpoint)
	proxy.SetRate(rate)
	cfg.imagerStore = proxy.StoreURL
	cfg.imagerArgs = append(cfg.imagerArgs, "--write-while-fetching")
	return startFarmWith(t, cfg), proxy
}

// TestImagerLost kills (SIGKILL) or freezes (SIGSTOP, then SIGCONT after
// it was declared lost) the imager writing a standing order's 8 drives:
// its tasks must be LOST within the heartbeat TTL and placed again on the
// other node, where the job finishes; the imager that comes back neither
// resumes the fenced tasks nor gets its late reports accepted (the
// invariants check that no task changes after LOST and no drive is opened
// more often than tasks started on it).
func TestImagerLost(t *testing.T) {
	requireE2E(t)
	const ttl = 2 * time.Second
	const fast, crawl = 2 << 20, 64 << 10
	f, proxy := throttled(t, farmConfig{nodes: map[string]int{"n1": 8, "n2": 8}, driveSize: 20 << 20, ttl: ttl}, fast)
	var jobs []string
	var detect, resched []time.Duration
	for run := range *lossRuns {
		victim, other := "n1", "n2"
		if run%2 == 1 {
			victim, other = other, victim
		}
		freeze := run%4 >= 2 // runs 0,1 kill, 2,3 freeze, ...
		ref := fmt.Sprintf("loss:%d", run)
		f.pushImage(ref, 16<<20) // a new image, so every run fetches through the proxy
		// Fresh keys on the victim's bench; the other bench is empty when
		// the order comes (a standing order leaves written keys alone).
		for i := 1; i <= 8; i++ {
			os.Remove(f.drivePath(victim, fmt.Sprintf("virt-d%d.img", i)))
			os.Remove(f.drivePath(other, fmt.Sprintf("virt-d%d.img", i)))
		}
		f.waitDrives(victim, 0)
		f.waitDrives(other, 0)
		for i := 1; i <= 8; i++ {
			f.addDrive(victim, fmt.Sprintf("d%d.img", i))
		}
		f.waitDrives(victim, 8)
		id := f.submit(standingOrder(ref, 8))
		jobs = append(jobs, id)
		testenv.Eventually(f.t, 60*time.Second, "8 tasks under way on "+victim+", writing", func() bool {
			job := f.job(id)
			return countTasks(job, victim, func(t *imagefarmv1.Task) bool { return running(t.GetState()) }) == 8 &&
				countTasks(job, victim, func(t *imagefarmv1.Task) bool { return t.GetState() == imagefarmv1.TaskState_TASK_STATE_WRITING }) > 0
		})
		proxy.SetRate(crawl)      // the victim is mid-write until the fault
		for i := 1; i <= 8; i++ { // keys plugged into the other bench
			f.addDrive(other, fmt.Sprintf("d%d.img", i))
		}
		f.waitDrives(other, 8)
		t0 := time.Now()
		if freeze {
			f.imagers[victim].pause()
		} else {
			f.imagers[victim].kill()
		}
		proxy.SetRate(fast)
		var tLost, tMoved time.Duration
		testenv.Eventually(f.t, 60*time.Second, "job "+id+" moved to "+other, func() bool {
			job := f.job(id)
			if tLost == 0 && countTasks(job, victim, func(t *imagefarmv1.Task) bool { return t.GetState() == imagefarmv1.TaskState_TASK_STATE_LOST }) == 8 {
				tLost = time.Since(t0)
			}
			if tMoved == 0 && countTasks(job, other, func(t *imagefarmv1.Task) bool {
				return running(t.GetState()) || t.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE
			}) == 8 {
				tMoved = time.Since(t0)
			}
			return tLost > 0 && tMoved > 0
		})
		job := waitFinal(t, f, id)
		if job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("run %d: job %s ended %v, want SUCCEEDED on %s", run, id, job.GetState(), other)
		}
		if freeze {
			f.imagers[victim].resume()
		} else {
			f.imagers[victim].start()
		}
		f.waitNodes(2)
		detect, resched = append(detect, tLost), append(resched, tMoved)
	}
	sum := f.checkInvariants(jobs)
	for _, id := range jobs { // the fenced tasks stayed LOST
		job := f.job(id)
		for _, task := range job.GetTasks() {
			if task.GetState() == imagefarmv1.TaskState_TASK_STATE_LOST && task.GetFailure().GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_NODE_LOST {
				t.Errorf("task %s is LOST with reason %v, want NODE_LOST", task.GetId(), task.GetFailure().GetReason())
			}
		}
	}
	t.Logf("imager lost, %d runs (TTL %v): detection p50 %v p99 %v; on the other node p50 %v p99 %v; jobs lost 0; %v",
		len(detect), ttl, pct(detect, 50), pct(detect, 99), pct(resched, 50), pct(resched, 99), sum)
	for _, d := range detect {
		if d > ttl+3*time.Second { // the TTL, the 1 s liveness tick, and a loaded CI machine
			t.Errorf("a node was declared lost %v after it died; the TTL is %v", d, ttl)
		}
	}
}

// TestControllerKilled kills the controller while 50 tasks run, starts it
// again, and checks that every job completes with each task run once, and
// that a watch connected across the restart resumes from its revision with
// no gap and no duplicate.
func TestControllerKilled(t *testing.T) {
	requireE2E(t)
	f, _ := throttled(t, farmConfig{nodes: map[string]int{"n1": 25, "n2": 25}, driveSize: 20 << 20}, 1<<20)
	f.pushImage("ctl:1", 16<<20)
	var jobs []string
	for j := range 5 { // five jobs of ten named drives
		var ids []string
		for i := 1; i <= 10; i++ {
			n := j*10 + i
			ids = append(ids, fmt.Sprintf("n%d/virt-d%d.img", 1+(n-1)/25, 1+(n-1)%25))
		}
		jobs = append(jobs, f.submit(drivesJob("ctl:1", ids...)))
	}
	type watch struct {
		seen    []uint64
		redials int
	}
	watched := make(chan watch, 1)
	go func() { seen, redials := f.watchAcrossRestarts(jobs[0]); watched <- watch{seen, redials} }()
	testenv.Eventually(f.t, 60*time.Second, "50 tasks running", func() bool {
		n := 0
		for _, id := range jobs {
			n += countTasks(f.job(id), "", func(t *imagefarmv1.Task) bool { return running(t.GetState()) })
		}
		return n == 50
	})
	t0 := time.Now()
	f.controller.kill()
	time.Sleep(time.Second)
	f.controller.start()
	f.waitNodes(2)
	back := time.Since(t0)
	sum := f.checkInvariants(jobs)
	for _, id := range jobs {
		if job := f.job(id); job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED || job.GetTaskCounts().GetDone() != 10 {
			t.Errorf("job %s ended %v with %v, want SUCCEEDED with 10 done", id, job.GetState(), job.GetTaskCounts())
		}
	}
	w := <-watched
	all := revisions(f.events(jobs[0]))
	if !slices.Equal(w.seen, all) {
		t.Errorf("the watch across the restart saw revisions %v, the stream holds %v", w.seen, all)
	}
	if w.redials == 0 {
		t.Errorf("the watch never lost its stream: the controller was not killed under it")
	}
	t.Logf("controller killed with 50 tasks running: imagers back online %v after the kill; watch redialed %d times and saw %d events, no gap, no duplicate; %v",
		back, w.redials, len(w.seen), sum)
}

// watchAcrossRestarts watches a job to its end, reconnecting from the
// revision after the last one seen whenever the stream breaks, and returns
// the stored events' revisions as received and how often it redialed.
func (f *farm) watchAcrossRestarts(id string) (seen []uint64, redials int) {
	from := uint64(1)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := f.api.WatchJob(ctx, &imagefarmv1.WatchJobRequest{JobId: id, FromRevision: from})
		for err == nil {
			var resp *imagefarmv1.WatchJobResponse
			if resp, err = w.Recv(); err != nil {
				break
			}
			if ev := resp.GetEvent(); ev.GetKind() != imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
				seen = append(seen, ev.GetRevision())
				from = ev.GetRevision() + 1
				if j := ev.GetJob(); j != nil && j.GetState().Final() {
					cancel()
					return seen, redials
				}
			}
		}
		cancel()
		redials++
		time.Sleep(200 * time.Millisecond)
	}
	return seen, redials
}

func revisions(events []*imagefarmv1.JobEvent) []uint64 {
	var r []uint64
	for _, ev := range events {
		r = append(r, ev.GetRevision())
	}
	return r
}

// TestNATSRestarted kills the NATS server mid-job and starts it again on
// the same port and store: the controller and the imagers reconnect by
// themselves and the job completes.
func TestNATSRestarted(t *testing.T) {
	requireE2E(t)
	f, _ := throttled(t, farmConfig{nodes: map[string]int{"n1": 4, "n2": 4}, driveSize: 28 << 20}, 2<<20)
	f.pushImage("nats:1", 24<<20)
	var ids []string
	for _, n := range []string{"n1", "n2"} {
		for i := 1; i <= 4; i++ {
			ids = append(ids, fmt.Sprintf("%s/virt-d%d.img", n, i))
		}
	}
	id := f.submit(drivesJob("nats:1", ids...))
	testenv.Eventually(f.t, 60*time.Second, "8 tasks running", func() bool {
		return countTasks(f.job(id), "", func(t *imagefarmv1.Task) bool { return running(t.GetState()) }) == 8
	})
	t0 := time.Now()
	f.natsProc.kill()
	time.Sleep(2 * time.Second)
	f.natsProc.start()
	job := waitFinal(t, f, id)
	took := time.Since(t0)
	if job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %v after NATS restarted, want SUCCEEDED", job.GetState())
	}
	// And the farm still takes work.
	id2 := f.submit(drivesJob("nats:1", "n1/virt-d1.img"))
	if job := waitFinal(t, f, id2); job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("a job submitted after NATS came back ended %v", job.GetState())
	}
	t.Logf("NATS killed mid-job, back after 2s: job done %v after the kill; %v", took, f.checkInvariants([]string{id, id2}))
}

// TestRedelivery makes NATS deliver assignments more than once: the ack
// wait is forced to 1s and the imager frozen for 3s mid-write, so every
// assignment it holds is delivered again; then each is published again
// under a new message id, mid-job and after it. No drive may be written
// twice or by two writers at once.
func TestRedelivery(t *testing.T) {
	requireE2E(t)
	f, _ := throttled(t, farmConfig{nodes: map[string]int{"n1": 4}, driveSize: 20 << 20, ackWait: time.Second}, 1<<20)
	f.pushImage("redeliver:1", 16<<20)
	id := f.submit(drivesJob("redeliver:1", "n1/virt-d1.img", "n1/virt-d2.img", "n1/virt-d3.img", "n1/virt-d4.img"))
	testenv.Eventually(f.t, 60*time.Second, "4 tasks writing", func() bool {
		return countTasks(f.job(id), "", func(t *imagefarmv1.Task) bool { return t.GetState() == imagefarmv1.TaskState_TASK_STATE_WRITING }) == 4
	})
	f.imagers["n1"].pause()
	time.Sleep(3 * time.Second) // three ack waits without a word from the imager
	f.imagers["n1"].resume()
	held := f.streamedAssignments()
	f.publishCopies(held)
	job := waitFinal(t, f, id)
	if job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %v, want SUCCEEDED", job.GetState())
	}
	// The same assignments once more, long after they were acked: each
	// must be answered from the imager's record and acked, not written.
	// The later event that proves it is the imager's line for every copy
	// and the stream empty again; the invariants then find each drive
	// written once.
	before := f.countLog("imager-n1", "assignment delivered again")
	f.publishCopies(held)
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("the imager answering the %d copies published after the job", len(held)), func() bool {
		return f.countLog("imager-n1", "assignment delivered again") >= before+len(held) && f.streamMsgs() == 0
	})
	sum := f.checkInvariants([]string{id})
	again := f.countLog("imager-n1", "assignment delivered again")
	if again == 0 || len(held) == 0 {
		t.Errorf("the imager saw %d assignments again and %d were copied: the scenario did not force a redelivery", again, len(held))
	}
	t.Logf("redelivery: %d deliveries seen again by the imager, %d copies published mid-job and again after it; %v", again, len(held), sum)
}

// streamedAssignments returns every message still in the assignment
// stream: those no imager acked yet.
func (f *farm) streamedAssignments() []*jetstream.RawStreamMsg {
	f.t.Helper()
	var msgs []*jetstream.RawStreamMsg
	f.withDispatchStream(func(ctx context.Context, _ jetstream.JetStream, stream jetstream.Stream, info *jetstream.StreamInfo) {
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			if m, err := stream.GetMsg(ctx, seq); err == nil { // else acked meanwhile
				msgs = append(msgs, m)
			}
		}
	})
	return msgs
}

// publishCopies publishes msgs again, each under a new message id, as
// duplicates the stream cannot drop.
func (f *farm) publishCopies(msgs []*jetstream.RawStreamMsg) {
	f.t.Helper()
	f.withDispatchStream(func(ctx context.Context, js jetstream.JetStream, _ jetstream.Stream, _ *jetstream.StreamInfo) {
		for _, m := range msgs {
			if _, err := js.Publish(ctx, m.Subject, m.Data, jetstream.WithMsgID(fmt.Sprintf("dup-%d-%d", m.Sequence, time.Now().UnixNano()))); err != nil {
				f.t.Fatal(err)
			}
		}
	})
}

// streamMsgs is how many messages the assignment stream holds: those no
// imager acked or terminated yet.
func (f *farm) streamMsgs() uint64 {
	f.t.Helper()
	var n uint64
	f.withDispatchStream(func(_ context.Context, _ jetstream.JetStream, _ jetstream.Stream, info *jetstream.StreamInfo) {
		n = info.State.Msgs
	})
	return n
}

// withDispatchStream calls fn with the assignment stream, over a
// connection with the controller's credentials, within 10 seconds.
func (f *farm) withDispatchStream(fn func(context.Context, jetstream.JetStream, jetstream.Stream, *jetstream.StreamInfo)) {
	f.t.Helper()
	auth, err := natsauth.ConnectOptions(f.natsCreds(""))
	if err != nil {
		f.t.Fatal(err)
	}
	nc, err := nats.Connect(f.nats, auth...)
	if err != nil {
		f.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	fn(ctx, js, stream, info)
}

// countLog counts the lines containing s in every log of the named process.
func (f *farm) countLog(name, s string) int {
	n := 0
	for _, p := range f.procs() {
		if p.name != name {
			continue
		}
		for _, l := range p.lives {
			data, _ := os.ReadFile(l.log)
			n += strings.Count(string(data), s)
		}
	}
	return n
}

// pct is the p-th percentile of ds (nearest rank).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (p*len(s) + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(10 * time.Millisecond)
}
