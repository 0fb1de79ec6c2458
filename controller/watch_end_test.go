package controller

import (
	"testing"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// TestJobEndWaitsForEveryTasksLastEvent: the watch of one job ends only
// when the job's final event and every task's stored state have been sent,
// whatever order the stream gave them in (a job can end on one task's
// report while another task's DONE event is still being appended).
func TestJobEndWaitsForEveryTasksLastEvent(t *testing.T) {
	const (
		done = imagefarmv1.TaskState_TASK_STATE_DONE
		lost = imagefarmv1.TaskState_TASK_STATE_LOST
		ver  = imagefarmv1.TaskState_TASK_STATE_VERIFYING
	)
	e := jobEnd{sent: map[string]imagefarmv1.TaskState{"t1": done, "t2": ver, "t3": lost}}
	if e.done() {
		t.Fatal("done before the job's final event was sent")
	}
	e.record = &imagefarmv1.Job{Tasks: []*imagefarmv1.Task{{Id: "t1", State: done}, {Id: "t2", State: done}, {Id: "t3", State: lost}}}
	if e.done() {
		t.Fatal("done while task t2's DONE event had not been sent (its last sent state was VERIFYING)")
	}
	e.sent["t2"] = done
	if !e.done() {
		t.Fatal("not done once every task's stored state was sent")
	}
}
