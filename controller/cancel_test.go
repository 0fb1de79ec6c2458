package controller_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestCancelOfAnEndedJobIsRefusedAndNotRecorded: a job that succeeded, or
// was canceled already, is not canceled (again): each try is refused with
// FailedPrecondition naming the state the job ended in, and the audit
// trail holds only the one cancel that happened.
func TestCancelOfAnEndedJobIsRefusedAndNotRecorded(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	im := f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"))
	done, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")})
	if err != nil {
		t.Fatal(err)
	}
	im.Result(im.Assignment(), imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	waitJob(t, f, done.GetJob().GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	canceled, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2")})
	if err != nil {
		t.Fatal(err)
	}
	im.Assignment()
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: canceled.GetJob().GetId()}); err != nil {
		t.Fatalf("CancelJob(a running job) = %v", err)
	}
	for _, tc := range []struct {
		id, state string
	}{
		{done.GetJob().GetId(), "SUCCEEDED"},
		{done.GetJob().GetId(), "SUCCEEDED"},
		{canceled.GetJob().GetId(), "CANCELED"},
	} {
		_, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: tc.id})
		want := "job " + tc.id + " already " + tc.state + ": nothing to cancel"
		if status.Code(err) != codes.FailedPrecondition || !strings.HasPrefix(status.Convert(err).Message(), want) {
			t.Errorf("CancelJob(%s job) = %v, want FailedPrecondition %q", tc.state, err, want)
		}
	}
	recs, err := trail(t, f.API)
	if err != nil {
		t.Fatal(err)
	}
	var cancels []string
	for _, r := range recs {
		if r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_JOB_CANCEL {
			cancels = append(cancels, r.GetJobId()+" "+r.GetMessage())
		}
	}
	if want := canceled.GetJob().GetId() + " the job was RUNNING"; len(cancels) != 1 || cancels[0] != want {
		t.Errorf("job.cancel records: %q, want only %q", strings.Join(cancels, "; "), want)
	}
}
