package core

import (
	"errors"
	"testing"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// TestRefusedDriveStaysRefusedAfterItsTask: a drive its node's guards
// refuse while a task holds it (its imager reconnects and reports it
// REFUSED) stays REFUSED when that task ends, since its imager will not
// say so again until it reports the drive anew; no placement can claim it
// then, and it is AVAILABLE again once its imager reports it so.
func TestRefusedDriveStaysRefusedAfterItsTask(t *testing.T) {
	c, st, _ := newCore(t)
	ctx := t.Context()
	report := func(s imagefarmv1.DriveState) {
		t.Helper()
		d := &imagefarmv1.Drive{Id: "d1", Serial: "S1", SizeBytes: 1 << 30, State: s}
		if s == driveRefused {
			d.Refusal = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MOUNTED, Message: "mounted at /mnt"}
		}
		if err := c.PutDrive(ctx, "n1", d); err != nil {
			t.Fatalf("PutDrive(%v) = %v", s, err)
		}
	}
	drive := func() *imagefarmv1.Drive {
		t.Helper()
		d, err := st.GetDrive(ctx, "n1", "d1")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	place := func(job string) (*imagefarmv1.Task, error) {
		t.Helper()
		if _, err := c.CreateJob(ctx, &imagefarmv1.Job{Id: job, ImageRef: "img:1", State: jobPending}); err != nil {
			t.Fatal(err)
		}
		task, _, err := c.Assign(ctx, scheduler.Placement{JobID: job, NodeID: "n1", Epoch: 1,
			Drive: scheduler.DriveIdentity{ID: "d1", Serial: "S1", Size: 1 << 30}})
		return task, err
	}

	report(driveAvailable)
	task, err := place("j1")
	if err != nil || task == nil {
		t.Fatalf("Assign on an AVAILABLE drive = %v, %v; want a task", task, err)
	}
	report(driveRefused) // the guards refuse it now, mid-task
	if d := drive(); d.GetState() != driveRefused || d.GetTaskId() != task.GetId() {
		t.Fatalf("drive refused while its task runs = %v %q, want REFUSED held by %s", d.GetState(), d.GetTaskId(), task.GetId())
	}
	if err := c.EndTask(ctx, "node:n1", task, &imagefarmv1.TaskResult{TaskId: task.GetId(), State: imagefarmv1.TaskState_TASK_STATE_FAILED}); err != nil {
		t.Fatal(err)
	}
	if d := drive(); d.GetState() != driveRefused || d.GetTaskId() != "" || d.GetLastTaskId() != task.GetId() ||
		d.GetRefusal().GetMessage() != "mounted at /mnt" {
		t.Errorf("refused drive after its task ended = %v task %q last %q refusal %q; want REFUSED, free, last task %s, refusal kept",
			d.GetState(), d.GetTaskId(), d.GetLastTaskId(), d.GetRefusal().GetMessage(), task.GetId())
	}
	if task, err := place("j2"); task != nil || !errors.Is(err, ErrClaimed) {
		t.Errorf("Assign on a REFUSED drive = %v, %v; want ErrClaimed and no task", task, err)
	}
	if d := drive(); d.GetState() != driveRefused || d.GetTaskId() != "" {
		t.Errorf("refused drive after a refused claim = %v %q, want REFUSED, free", d.GetState(), d.GetTaskId())
	}

	report(driveAvailable) // its guards pass again
	if task, err := place("j3"); err != nil || task == nil {
		t.Errorf("Assign once the drive is reported AVAILABLE again = %v, %v; want a task", task, err)
	}
}
