package controller_test

import (
	"context"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// beat sends heartbeats until the test ends, like a healthy imager.
func (im *scriptedImager) beat(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
				im.stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Heartbeat{Heartbeat: &imagefarmv1.Heartbeat{}}})
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func standingOrder(pool string, n uint32) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{
		Count: n, Selector: &imagefarmv1.Selector{Pool: pool}}}}
}

func TestLostNodesTasksMoveToAnotherNode(t *testing.T) {
	f := startFarm(t, 1500*time.Millisecond)
	silent := f.connect(t, "n1", usbDrive("a"), usbDrive("b"))
	healthy := f.connect(t, "n2", usbDrive("c"), usbDrive("d"))
	healthy.beat(t)
	sub, err := f.api.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: standingOrder("bench", 2)})
	if err != nil {
		t.Fatal(err)
	}
	first := []*imagefarmv1.TaskAssignment{silent.assignment(), silent.assignment()}
	// n1 goes silent: after the TTL its tasks are LOST and n2 gets them.
	for range 2 {
		a := healthy.assignment()
		if a.GetNodeId() != "n2" {
			t.Fatalf("requeued task went to %s, want n2", a.GetNodeId())
		}
		healthy.result(a, imagefarmv1.TaskState_TASK_STATE_DONE, f.digest)
	}
	job := waitJob(t, f, sub.GetJob().GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if c := job.GetTaskCounts(); c.GetLost() != 2 || c.GetDone() != 2 {
		t.Errorf("task counts %v, want 2 lost and 2 done", c)
	}
	// The fenced node's late result is refused, and changes nothing.
	silent.result(first[0], imagefarmv1.TaskState_TASK_STATE_DONE, f.digest)
	for m := range silent.replies {
		if m.GetStopTask() != nil {
			break
		}
	}
	if job := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED); job.GetTaskCounts().GetLost() != 2 {
		t.Errorf("after a fenced report, counts %v; want it refused", job.GetTaskCounts())
	}
	nodes, _ := f.api.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
	for _, n := range nodes.GetNodes() {
		if want := map[string]imagefarmv1.NodeState{"n1": imagefarmv1.NodeState_NODE_STATE_LOST, "n2": imagefarmv1.NodeState_NODE_STATE_ONLINE}[n.GetId()]; n.GetState() != want {
			t.Errorf("node %s is %v, want %v", n.GetId(), n.GetState(), want)
		}
	}
}

func TestCancelStopsTheImagerAndEndsTasksCanceled(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	im := f.connect(t, "n1", usbDrive("d1"))
	sub, err := f.api.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1",
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: []string{"n1/d1"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	a := im.assignment()
	resp, err := f.api.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: sub.GetJob().GetId()})
	if err != nil || resp.GetJob().GetState() != imagefarmv1.JobState_JOB_STATE_CANCELED || resp.GetJob().GetTasks()[0].GetState() != imagefarmv1.TaskState_TASK_STATE_CANCELED {
		t.Fatalf("CancelJob = %v, %v; want the job and its task CANCELED", resp.GetJob(), err)
	}
	deadline := time.After(time.Second)
	for {
		select {
		case m := <-im.replies:
			if st := m.GetStopTask(); st != nil && st.GetTaskId() == a.GetTaskId() {
				return
			}
		case <-deadline:
			t.Fatal("no StopTask within a second of the cancel")
		}
	}
}
