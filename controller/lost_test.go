package controller_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

func standingOrder(pool string, n uint32) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{
		Count: n, Selector: &imagefarmv1.Selector{Pool: pool}}}}
}

func TestLostNodesTasksMoveToAnotherNode(t *testing.T) {
	// The healthy node beats every 200ms: a TTL of fifteen beats keeps it
	// alive on a loaded machine too, while the silent one is lost.
	f := farm.Start(t, farm.Options{HeartbeatTTL: 3 * time.Second, PushImage: true})
	silent := f.Connect(t, "n1", usbDrive("a"), usbDrive("b"))
	healthy := f.Connect(t, "n2", usbDrive("c"), usbDrive("d"))
	healthy.Beat()
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: standingOrder("bench", 2)})
	if err != nil {
		t.Fatal(err)
	}
	first := []*imagefarmv1.TaskAssignment{silent.Assignment(), silent.Assignment()}
	// n1 goes silent: after the TTL its tasks are LOST and n2 gets them.
	for range 2 {
		a := healthy.Assignment()
		if a.GetNodeId() != "n2" {
			t.Fatalf("requeued task went to %s, want n2", a.GetNodeId())
		}
		healthy.Result(a, imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	}
	job := waitJob(t, f, sub.GetJob().GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if c := job.GetTaskCounts(); c.GetLost() != 2 || c.GetDone() != 2 {
		t.Errorf("task counts %v, want 2 lost and 2 done", c)
	}
	// The fenced node's late result is refused, and changes nothing.
	silent.Result(first[0], imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	for m := range silent.Replies {
		if m.GetStopTask() != nil {
			break
		}
	}
	if job := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED); job.GetTaskCounts().GetLost() != 2 {
		t.Errorf("after a fenced report, counts %v; want it refused", job.GetTaskCounts())
	}
	nodes, _ := f.API.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
	for _, n := range nodes.GetNodes() {
		if want := map[string]imagefarmv1.NodeState{"n1": imagefarmv1.NodeState_NODE_STATE_LOST, "n2": imagefarmv1.NodeState_NODE_STATE_ONLINE}[n.GetId()]; n.GetState() != want {
			t.Errorf("node %s is %v, want %v", n.GetId(), n.GetState(), want)
		}
	}
}

func TestCancelStopsTheImagerAndEndsTasksCanceled(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	im := f.Connect(t, "n1", usbDrive("d1"))
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1",
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: []string{"n1/d1"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	a := im.Assignment()
	resp, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: sub.GetJob().GetId()})
	if err != nil || resp.GetJob().GetState() != imagefarmv1.JobState_JOB_STATE_CANCELED || resp.GetJob().GetTasks()[0].GetState() != imagefarmv1.TaskState_TASK_STATE_CANCELED {
		t.Fatalf("CancelJob = %v, %v; want the job and its task CANCELED", resp.GetJob(), err)
	}
	deadline := time.After(10 * time.Second) // no speed asserted: only so that a failing test ends
	for {
		select {
		case m := <-im.Replies:
			if st := m.GetStopTask(); st != nil && st.GetTaskId() == a.GetTaskId() {
				return
			}
		case <-deadline:
			t.Fatal("no StopTask for the canceled task within 10s")
		}
	}
}

// TestImagerBackWithAStaleEpochIsToldToStop has an imager say Hello again
// holding the task it was assigned, once after its node was declared lost
// and once as a restarted instance: either way the node's epoch moved on,
// and the controller must answer with a StopTask for that very task at
// the epoch it holds it under, with reason STALE_EPOCH.
func TestImagerBackWithAStaleEpochIsToldToStop(t *testing.T) {
	for _, tc := range []struct {
		name, instance string
		lost           bool // wait for the node to be declared lost first
	}{
		{"back after it was declared lost", "i-n1", true},
		{"restarted as another instance", "i-n1-restarted", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := farm.Start(t, farm.Options{HeartbeatTTL: 1500 * time.Millisecond, PushImage: true})
			old := f.Connect(t, "n1", usbDrive("d1"))
			if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")}); err != nil {
				t.Fatal(err)
			}
			a := old.Assignment()
			if tc.lost {
				waitNode(t, f, "n1", imagefarmv1.NodeState_NODE_STATE_LOST)
			}
			stop := helloHolding(t, f, &imagefarmv1.Hello{NodeId: "n1", InstanceId: tc.instance, Pool: "bench", Drives: []*imagefarmv1.Drive{usbDrive("d1")},
				HeldTasks: []*imagefarmv1.HeldTask{{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_WRITING}}})
			if stop.GetTaskId() != a.GetTaskId() || stop.GetEpoch() != a.GetEpoch() || stop.GetReason() != imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH {
				t.Errorf("Hello holding task %s at epoch %d answered StopTask{task %s, epoch %d, %v}, want that task and epoch, STALE_EPOCH",
					a.GetTaskId(), a.GetEpoch(), stop.GetTaskId(), stop.GetEpoch(), stop.GetReason())
			}
		})
	}
}

// waitNode waits until the controller lists node in state want.
func waitNode(t *testing.T, f *farm.Farm, node string, want imagefarmv1.NodeState) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("node %s %v", node, want), func() bool {
		resp, err := f.API.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
		return err == nil && slices.ContainsFunc(resp.GetNodes(), func(n *imagefarmv1.Node) bool {
			return n.GetId() == node && n.GetState() == want
		})
	})
}

// helloHolding connects as h's node, says h, and returns the first
// StopTask the controller answers with after its HelloAck.
func helloHolding(t *testing.T, f *farm.Farm, h *imagefarmv1.Hello) *imagefarmv1.StopTask {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := f.ImagerClient(t, h.GetNodeId()).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: h}}); err != nil {
		t.Fatal(err)
	}
	ack, err := stream.Recv()
	if err != nil || ack.GetHelloAck() == nil {
		t.Fatalf("Hello answered %v, %v; want HelloAck", ack, err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("no StopTask after HelloAck at epoch %d: %v", ack.GetHelloAck().GetEpoch(), err)
		}
		if st := m.GetStopTask(); st != nil {
			return st
		}
	}
}

// TestPulledDriveStaysGoneAfterItsResult: a drive pulled mid-write is
// removed, then its task's result frees the claim: the drive must stay
// gone (it used to come back, empty, as a 0-byte drive a job could name).
func TestPulledDriveStaysGoneAfterItsResult(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	im := f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"))
	if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")}); err != nil {
		t.Fatal(err)
	}
	a := im.Assignment()
	listed := func() []string {
		resp, err := f.API.ListDrives(t.Context(), &imagefarmv1.ListDrivesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range resp.GetDrives() {
			ids = append(ids, d.GetId())
		}
		return ids
	}
	im.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveRemoved{DriveRemoved: &imagefarmv1.DriveRemoved{DriveId: "d1"}}})
	testenv.Eventually(t, 10*time.Second, "d1 removed", func() bool { return !slices.Contains(listed(), "d1") })
	im.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
		Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_REMOVED, Message: "device ended at offset 0"}}}})
	testenv.Eventually(t, 10*time.Second, "the task FAILED", func() bool {
		resp, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: a.GetJobId()})
		return err == nil && resp.GetJob().GetTaskCounts().GetFailed() == 1
	})
	if ids := listed(); !slices.Equal(ids, []string{"d2"}) {
		t.Errorf("drives after the pulled drive's result: %v, want only d2", ids)
	}
}
