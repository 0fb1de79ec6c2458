package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestAuditRecordsImageRefusals checks that a task the imager failed by
// refusing the image itself, before its drive was written, is recorded as
// a refusal with the drive and the image, and that a corrupt chunk met
// after bytes reached the drive stays a drive write.
func TestAuditRecordsImageRefusals(t *testing.T) {
	tests := []struct {
		drive  string
		reason imagefarmv1.FailureReason
		bytes  uint64
		want   imagefarmv1.AuditAction
	}{
		{"d1", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_MISSING, 0, imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED},
		{"d2", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID, 0, imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED},
		{"d3", imagefarmv1.FailureReason_FAILURE_REASON_ROLLBACK, 0, imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED},
		{"d4", imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT, 0, imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED},
		{"d5", imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT, 4096, imagefarmv1.AuditAction_AUDIT_ACTION_DRIVE_WRITTEN},
		{"d6", imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_IO_ERROR, 0, imagefarmv1.AuditAction_AUDIT_ACTION_DRIVE_WRITTEN},
	}
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	var drives []*imagefarmv1.Drive
	var targets []string
	for _, tt := range tests {
		drives = append(drives, usbDrive(tt.drive))
		targets = append(targets, "n1/"+tt.drive)
	}
	im := f.Connect(t, "n1", drives...)
	if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit(targets...)}); err != nil {
		t.Fatal(err)
	}
	assigned := map[string]*imagefarmv1.TaskAssignment{}
	for range tests {
		a := im.Assignment()
		assigned[a.GetDrive().GetId()] = a
	}
	for _, tt := range tests {
		a := assigned[tt.drive]
		im.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
			TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED, BytesWritten: tt.bytes,
			Failure: &imagefarmv1.Failure{Reason: tt.reason, Message: "refused " + tt.drive}}}})
	}
	var ends []*imagefarmv1.AuditRecord
	testenv.Eventually(t, 10*time.Second, "every task's end recorded", func() bool {
		recs, _ := trail(t, f.API)
		ends = slices.DeleteFunc(recs, func(r *imagefarmv1.AuditRecord) bool { return r.GetTaskId() == "" })
		return len(ends) == len(tests)
	})
	for _, tt := range tests {
		i := slices.IndexFunc(ends, func(r *imagefarmv1.AuditRecord) bool { return r.GetDriveId() == tt.drive })
		if i < 0 {
			t.Errorf("no record of %s", tt.drive)
			continue
		}
		r := ends[i]
		got := fmt.Sprintf("%v %s %s %s %s %v %q", r.GetAction(), r.GetActor(), r.GetNodeId(), r.GetDriveSerial(),
			r.GetImageDigest(), r.GetFailureReason(), r.GetMessage())
		want := fmt.Sprintf("%v node:n1 n1 SN-%s %s %v %q", tt.want, tt.drive, f.Digest, tt.reason, "refused "+tt.drive)
		if got != want {
			t.Errorf("%v after %d bytes recorded as\n%s, want\n%s", tt.reason, tt.bytes, got, want)
		}
	}
}

// TestAuditRecordsAFenceByANewInstance checks that a Hello from a new
// imager instance of a node that was online fences the old one: the fence
// is recorded with its reason, the old instance's task ends LOST, and its
// late report is refused.
func TestAuditRecordsAFenceByANewInstance(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	old := f.Connect(t, "n1", usbDrive("d1"))
	if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")}); err != nil {
		t.Fatal(err)
	}
	a := old.Assignment()

	stream, err := f.ImagerClient(t, "n1").Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: &imagefarmv1.Hello{
		NodeId: "n1", InstanceId: "i-n1-restarted", Pool: "bench", Drives: []*imagefarmv1.Drive{usbDrive("d1")}}}})
	ack, err := stream.Recv()
	if err != nil || ack.GetHelloAck().GetEpoch() != a.GetEpoch()+1 {
		t.Fatalf("new instance's Hello answered %v, %v; want HelloAck at epoch %d", ack, err, a.GetEpoch()+1)
	}

	// The task the old instance held ends LOST, and both are recorded.
	job := waitJob(t, f, a.GetJobId(), imagefarmv1.JobState_JOB_STATE_FAILED)
	if task := job.GetTasks()[0]; task.GetState() != imagefarmv1.TaskState_TASK_STATE_LOST ||
		task.GetFailure().GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_NODE_LOST {
		t.Errorf("the replaced instance's task is %v %v, want LOST NODE_LOST", task.GetState(), task.GetFailure())
	}
	recs, err := trail(t, f.API)
	if err != nil {
		t.Fatalf("the trail does not verify: %v", err)
	}
	var got []string
	for _, r := range recs {
		if r.GetAction() != imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT {
			got = append(got, summary(r))
		}
	}
	why := `imager instance "i-n1-restarted" replaced instance "i-n1"`
	want := []string{
		fmt.Sprintf("NODE_FENCED node:n1 node=n1 message=%s: epoch raised to %d", why, a.GetEpoch()+1),
		"DRIVE_WRITTEN controller node=n1 serial=SN-d1 image=img:1 message=" + why + " LOST NODE_LOST",
	}
	if !slices.Equal(got, want) {
		t.Errorf("records after the submit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The replaced instance's report at the old epoch is refused, and its
	// stream ended.
	old.Result(a, imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	stopped := false
	for m := range old.Replies {
		if st := m.GetStopTask(); st != nil && st.GetTaskId() == a.GetTaskId() {
			stopped = true
		}
	}
	if !stopped || old.Err == nil {
		t.Errorf("replaced instance's late result: stopped %v, stream ended with %v; want a StopTask and the stream ended", stopped, old.Err)
	}
}
