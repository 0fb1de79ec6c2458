package imager_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

const (
	stateDone     = imagefarmv1.TaskState_TASK_STATE_DONE
	stateCanceled = imagefarmv1.TaskState_TASK_STATE_CANCELED
)

func TestAgentWritesAssignedDrives(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	f := newRig(t, b, 2, 20*chunkSize, nil)
	checkHello(t, f.ctl.hellos()[0], f.drives)
	f.publish(t, f.assignment("job-1_t1", 0, 3), f.assignment("job-1_t2", 1, 3))
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	for i, id := range []string{"job-1_t1", "job-1_t2"} {
		r := f.ctl.result(t, id)
		if r.GetState() != stateDone || r.GetVerifiedDigest() != b.digest || r.GetEpoch() != 3 || r.GetBytesWritten() != uint64(b.m.Size) {
			t.Errorf("result of %s = %v, want DONE verified %s at epoch 3", id, r, b.digest)
		}
		if got := testenv.SHA256(t, f.drives[i].Path, b.m.Size); got != want {
			t.Errorf("drive %d holds sha256 %s, the image %s", i, got, want)
		}
		var states []imagefarmv1.TaskState
		for _, p := range f.ctl.progress(id) {
			states = slices.Compact(append(states, p.GetState()))
		}
		if !slices.Equal(states, []imagefarmv1.TaskState{imagefarmv1.TaskState_TASK_STATE_FETCHING,
			imagefarmv1.TaskState_TASK_STATE_WRITING, imagefarmv1.TaskState_TASK_STATE_VERIFYING}) {
			t.Errorf("progress states of %s = %v, want FETCHING, WRITING, VERIFYING", id, states)
		}
	}
	// Both drives were written by one fan-out: each stored chunk was
	// downloaded (and checked) once, then decompressed once for both.
	checkOneFetchOneFanout(t, b, "2 drives")
	f.drained(t) // acked once the controller acknowledged the results
}

// checkHello checks that h introduces the test node with its pool, labels
// and virtual drives, each available.
func checkHello(t *testing.T, h *imagefarmv1.Hello, drives []drive.Drive) {
	t.Helper()
	if h.GetNodeId() != testNode || h.GetInstanceId() == "" || h.GetPool() != "usb" || h.GetLabels()["site"] != "depot" {
		t.Fatalf("Hello = %v, want node %s with its pool and labels", h, testNode)
	}
	for _, d := range drives {
		i := slices.IndexFunc(h.GetDrives(), func(pd *imagefarmv1.Drive) bool { return pd.GetId() == d.ID })
		if i < 0 {
			t.Errorf("Hello drives = %v, want %s among them", h.GetDrives(), d.ID)
			continue
		}
		if pd := h.GetDrives()[i]; pd.GetState() != imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE ||
			pd.GetTransport() != imagefarmv1.Transport_TRANSPORT_VIRTUAL || pd.GetNodeId() != testNode || pd.GetPath() != d.Path {
			t.Errorf("Hello drive %v, want an available virtual drive of %s", pd, testNode)
		}
	}
}

func TestAgentRedeliveryDoesNotWriteTwice(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	f := newRig(t, b, 1, 20*chunkSize, nil)
	a := f.assignment("job-1_t1", 0, 3)
	f.publish(t, a)
	f.publishAgain(t, a) // while the first delivery waits or runs
	if r := f.ctl.result(t, "job-1_t1"); r.GetState() != stateDone {
		t.Fatalf("result = %v, want DONE", r)
	}
	f.drained(t)
	fi, err := os.Stat(f.drives[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	// After the run is over: the recorded result is sent again, the drive
	// is left alone.
	f.publishAgain(t, a)
	testenv.Eventually(t, waitLong, "result sent again", func() bool { return len(f.ctl.results("job-1_t1")) == 2 })
	f.drained(t)
	again, _ := os.Stat(f.drives[0].Path)
	if !again.ModTime().Equal(fi.ModTime()) {
		t.Errorf("drive modified at %v after the task was done at %v", again.ModTime(), fi.ModTime())
	}
	rs := f.ctl.results("job-1_t1")
	if !proto.Equal(rs[0].GetTaskResult(), rs[1].GetTaskResult()) {
		t.Errorf("result sent again = %v, want the recorded %v", rs[1], rs[0])
	}
	checkOneFetchOneFanout(t, b, "3 deliveries")
	if n := countState(f.ctl.progress("job-1_t1"), imagefarmv1.TaskState_TASK_STATE_FETCHING); n != 1 {
		t.Errorf("task started %d times, want once", n)
	}
}

// countState counts the times a task's progress entered state s.
func countState(ps []*imagefarmv1.TaskProgress, s imagefarmv1.TaskState) int {
	n := 0
	for i, p := range ps {
		if p.GetState() == s && (i == 0 || ps[i-1].GetState() != s) {
			n++
		}
	}
	return n
}

// checkOneFetchOneFanout checks that b's node cache downloaded (and
// checked) each stored chunk once, and served each once, to the one
// fan-out that wrote every drive.
func checkOneFetchOneFanout(t *testing.T, b *bench, what string) {
	t.Helper()
	st, want := b.cache.Stats(), int64(len(b.m.Chunks))-zeroChunks(b.m)
	if st.Misses != want || st.Hits != want {
		t.Errorf("for %s the node cache downloaded %d chunks and served %d, want %d and %d (once per stored chunk)",
			what, st.Misses, st.Hits, want, want)
	}
}

func TestAgentStaleEpochLeavesDriveUntouched(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	f := newRig(t, b, 2, 20*chunkSize, nil)
	f.publish(t, f.assignment("job-1_stale", 0, 2), f.assignment("job-1_good", 1, 3))
	if r := f.ctl.result(t, "job-1_good"); r.GetState() != stateDone {
		t.Fatalf("result of the current assignment = %v, want DONE", r)
	}
	f.drained(t) // the stale assignment was dropped from the stream
	if !f.untouched(t, 0) {
		t.Error("drive of the stale assignment was written")
	}
	if got := f.ctl.received(func(m *imagefarmv1.ConnectRequest) bool {
		return m.GetTaskProgress().GetTaskId() == "job-1_stale" || m.GetTaskResult().GetTaskId() == "job-1_stale"
	}); len(got) > 0 {
		t.Errorf("stale task reported: %v", got)
	}
}

func TestAgentCancelMidWrite(t *testing.T) {
	b := newBench(t, 64*chunkSize)
	f := newRig(t, b, 2, 64*chunkSize, stalledCatalog(t, b, nil)) // stalls until the write is canceled
	as := []*imagefarmv1.TaskAssignment{f.assignment("job-1_t1", 0, 3), f.assignment("job-1_t2", 1, 3)}
	f.publish(t, as...)
	testenv.Eventually(t, waitLong, "writing", func() bool {
		return countState(f.ctl.progress("job-1_t1"), imagefarmv1.TaskState_TASK_STATE_WRITING) > 0
	})
	start := time.Now()
	for _, a := range as { // a job's cancel: one per task
		if _, err := f.pub.Cancel(t.Context(), testNode, &imagefarmv1.TaskCancel{
			TaskId: a.GetTaskId(), JobId: a.GetJobId(), Epoch: 3, Reason: imagefarmv1.StopReason_STOP_REASON_CANCELED}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range as {
		r := f.ctl.result(t, a.GetTaskId())
		if r.GetState() != stateCanceled || r.GetVerifiedDigest() != "" {
			t.Errorf("result of %s = %v, want CANCELED, unverified", a.GetTaskId(), r)
		}
	}
	t.Logf("both tasks CANCELED %v after their cancels were published", time.Since(start))
	f.drained(t)
}

// TestAgentShutdownMidWriteReportsNoCancel shuts an agent down while it
// writes: its task must not be reported CANCELED (that would cancel the
// job), nor verified; the controller ends it LOST when the node comes back
// or its heartbeats stop.
func TestAgentShutdownMidWriteReportsNoCancel(t *testing.T) {
	b := newBench(t, 64*chunkSize)
	f := newRig(t, b, 1, 64*chunkSize, stalledCatalog(t, b, nil)) // stalls until the agent ends the write
	f.publish(t, f.assignment("job-1_t1", 0, 3))
	testenv.Eventually(t, waitLong, "writing", func() bool {
		return countState(f.ctl.progress("job-1_t1"), imagefarmv1.TaskState_TASK_STATE_WRITING) > 0
	})
	f.agent.Stop()
	if rs := f.ctl.results("job-1_t1"); len(rs) != 0 {
		t.Errorf("results after the agent's shutdown mid-write: %v, want none", rs)
	}
	// Whether a result queued during the shutdown would still have reached
	// the controller is a race; what the agent decided is in its log.
	logs := f.logs.String()
	if !strings.Contains(logs, "task interrupted by the imager's shutdown") || strings.Contains(logs, `msg="task finished"`) {
		t.Errorf("the agent's log does not show the task left unreported:\n%s", logs)
	}
}

func TestAgentCancelBeforeAssignment(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	f := newRig(t, b, 1, 20*chunkSize, nil)
	a := f.assignment("job-1_t1", 0, 3)
	// The cancel is read first, as when the assignment comes again after
	// the cancel was handled.
	if _, err := f.pub.Cancel(t.Context(), testNode, &imagefarmv1.TaskCancel{TaskId: a.GetTaskId(), JobId: a.GetJobId(), Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	f.publish(t, a)
	if r := f.ctl.result(t, "job-1_t1"); r.GetState() != stateCanceled {
		t.Errorf("result = %v, want CANCELED", r)
	}
	f.drained(t)
	if !f.untouched(t, 0) || len(f.ctl.progress("job-1_t1")) > 0 {
		t.Errorf("task canceled before it was assigned touched its drive (progress %v)", f.ctl.progress("job-1_t1"))
	}
}

func TestAgentStopTaskReportsNothingMore(t *testing.T) {
	b := newBench(t, 64*chunkSize)
	f := newRig(t, b, 1, 64*chunkSize, stalledCatalog(t, b, nil)) // stalls until the agent ends the write
	f.publish(t, f.assignment("job-1_t1", 0, 3))
	testenv.Eventually(t, waitLong, "writing", func() bool {
		return countState(f.ctl.progress("job-1_t1"), imagefarmv1.TaskState_TASK_STATE_WRITING) > 0
	})
	f.ctl.stopTask(t, "job-1_t1", 3)
	f.drained(t) // the stop ends the task for good: its message is acked
	// The write ends on the stop and a result would be queued then: wait
	// for its end and the heartbeats that follow anything queued.
	f.logged(t, 1, "task finished", "task_id=job-1_t1", "stopped=true")
	f.ctl.waitHeartbeats(t, 2)
	if rs := f.ctl.results("job-1_t1"); len(rs) > 0 {
		t.Errorf("stopped task reported %v, want nothing", rs)
	}
}

func TestAgentReconnectResendsUnacknowledged(t *testing.T) {
	for _, applied := range []bool{false, true} {
		name := map[bool]string{false: "result lost", true: "result applied before the drop"}[applied]
		t.Run(name, func(t *testing.T) {
			b := newBench(t, 16*chunkSize)
			f := newRig(t, b, 1, 20*chunkSize, nil)
			f.ctl.holdAcks.Store(true)
			first := f.ctl.hellos()[0]
			f.publish(t, f.assignment("job-1_t1", 0, 3))
			sent := f.ctl.result(t, "job-1_t1")
			seq := f.ctl.results("job-1_t1")[0].GetSeq()
			f.ctl.waitHeartbeats(t, 2) // a while after the result, still unacknowledged
			if n := f.streamMsgs(t); n != 1 {
				t.Errorf("dispatch stream holds %d messages while the result is unacknowledged, want 1", n)
			}
			next := &fakeController{epoch: 3}
			if applied {
				next.lastSeq = seq
			}
			f.restartController(t, next)
			testenv.Eventually(t, waitLong, "hello again", func() bool { return len(next.hellos()) > 0 })
			h := next.hellos()[0]
			// Only the test's virtual drive is compared: the host's block devices
			// (loop devices of tests running in parallel) come and go.
			hasVirtual := func(h *imagefarmv1.Hello) bool {
				return slices.ContainsFunc(h.GetDrives(), func(d *imagefarmv1.Drive) bool { return d.GetId() == "virt-d0.img" })
			}
			if h.GetInstanceId() != first.GetInstanceId() || !hasVirtual(h) || !hasVirtual(first) {
				t.Errorf("Hello after reconnect = %v, want instance %s with its drive", h, first.GetInstanceId())
			}
			held := []*imagefarmv1.HeldTask{{TaskId: "job-1_t1", Epoch: 3, State: stateDone}}
			if !slices.EqualFunc(h.GetHeldTasks(), held, func(x, y *imagefarmv1.HeldTask) bool { return proto.Equal(x, y) }) {
				t.Errorf("held tasks = %v, want %v", h.GetHeldTasks(), held)
			}
			f.drained(t)
			again := next.results("job-1_t1")
			switch {
			case applied && len(again) != 0:
				t.Errorf("result the controller applied was sent again: %v", again)
			case !applied && (len(again) != 1 || again[0].GetSeq() != seq || !proto.Equal(again[0].GetTaskResult(), sent)):
				t.Errorf("after reconnect got %v, want the result again with seq %d", again, seq)
			}
		})
	}
}

func TestAgentNewEpochFencesRunsAndStartsNewOnes(t *testing.T) {
	b := newBench(t, 64*chunkSize)
	fenced := make(chan struct{})
	f := newRig(t, b, 2, 64*chunkSize, stalledCatalog(t, b, fenced)) // job-1_old writes until it is fenced
	f.publish(t, f.assignment("job-1_old", 0, 3))
	testenv.Eventually(t, waitLong, "writing", func() bool {
		return countState(f.ctl.progress("job-1_old"), imagefarmv1.TaskState_TASK_STATE_WRITING) > 0
	})
	// Assigned under the epoch the node will get at its next HelloAck:
	// it waits for it.
	f.publish(t, f.assignment("job-2_new", 1, 4))
	// Delivered again after it was put off: the first delivery did not run.
	f.logged(t, 2, "assignment ahead of the node's epoch", "task_id=job-2_new")
	if !f.untouched(t, 1) {
		t.Fatal("assignment for a future epoch ran before the node had that epoch")
	}
	next := &fakeController{epoch: 4}
	f.restartController(t, next)
	f.logged(t, 1, "task fenced by the node's new epoch", "task_id=job-1_old")
	close(fenced) // the download goes on, for job-2_new
	if r := next.result(t, "job-2_new"); r.GetState() != stateDone {
		t.Errorf("result at the new epoch = %v, want DONE", r)
	}
	f.drained(t)
	if got := next.received(func(m *imagefarmv1.ConnectRequest) bool {
		return m.GetTaskResult().GetTaskId() == "job-1_old" || m.GetTaskProgress().GetTaskId() == "job-1_old"
	}); len(got) > 0 {
		t.Errorf("fenced task reported to the controller: %v", got)
	}
}

func TestProtoDrive(t *testing.T) {
	tests := []struct {
		name   string
		d      drive.Drive
		state  imagefarmv1.DriveState
		reason imagefarmv1.FailureReason
	}{
		{"writable", drive.Drive{ID: "virt-a", Transport: drive.TransportVirtual, Size: 1 << 30},
			imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE, imagefarmv1.FailureReason_FAILURE_REASON_UNSPECIFIED},
		{"read-only", drive.Drive{ID: "virt-b", Transport: drive.TransportVirtual, Size: 1 << 30, ReadOnly: true},
			imagefarmv1.DriveState_DRIVE_STATE_REFUSED, imagefarmv1.FailureReason_FAILURE_REASON_GUARD_READ_ONLY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := imager.ProtoDrive("n1", tt.d, drive.Config{})
			if got.GetId() != tt.d.ID || got.GetNodeId() != "n1" || got.GetSizeBytes() != 1<<30 ||
				got.GetState() != tt.state || got.GetRefusal().GetReason() != tt.reason {
				t.Errorf("ProtoDrive(%+v) = %v, want state %v refusal %v", tt.d, got, tt.state, tt.reason)
			}
		})
	}
}
