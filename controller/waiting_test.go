package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// jobEvents streams a job's events from revision from on, until the test
// ends.
func jobEvents(t *testing.T, f *farm.Farm, id string, from uint64) <-chan *imagefarmv1.JobEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	w, err := f.API.WatchJob(ctx, &imagefarmv1.WatchJobRequest{JobId: id, FromRevision: from})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *imagefarmv1.JobEvent, 64)
	go func() {
		defer close(out)
		for {
			resp, err := w.Recv()
			if err != nil {
				return
			}
			out <- resp.GetEvent()
		}
	}()
	return out
}

// nextJobEvent is the next job event of events that ok accepts; task
// events pass by.
func nextJobEvent(t *testing.T, events <-chan *imagefarmv1.JobEvent, what string, ok func(*imagefarmv1.Job) bool) *imagefarmv1.Job {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var last *imagefarmv1.Job
	for {
		select {
		case ev, open := <-events:
			if !open {
				t.Fatalf("the watch ended before %s; last job event: %v", what, last)
			}
			if job := ev.GetJob(); job != nil {
				if last = job; ok(job) {
					return job
				}
			}
		case <-timeout:
			t.Fatalf("no job event within 10s with %s; last: %v", what, last)
		}
	}
}

// TestStandingOrderSaysWhyItWaits runs a standing order on a drive a first
// order wrote: the job says, in its record and in a job event, that the
// drive was written since inserted and must be re-inserted; once it is, the
// order takes it and the reason goes.
func TestStandingOrderSaysWhyItWaits(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	im := f.Connect(t, "n1", usbDrive("d1"))
	submit := func() *imagefarmv1.Job {
		t.Helper()
		resp, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: order(1, &imagefarmv1.Selector{})})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetJob()
	}
	first := submit()
	im.Result(im.Assignment(), imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	if done := waitJob(t, f, first.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED); done.GetWaitingReason() != "" {
		t.Errorf("a succeeded job waits for %q, want nothing", done.GetWaitingReason())
	}

	second := submit()
	events := jobEvents(t, f, second.GetId(), second.GetRevision()+1)
	const want = "needs 1 more drive: 1 written since inserted (n1/d1); a standing order takes only freshly inserted drives: pull and re-insert them"
	got := nextJobEvent(t, events, "a waiting reason", func(j *imagefarmv1.Job) bool { return j.GetWaitingReason() != "" })
	if got.GetWaitingReason() != want || got.GetState() != imagefarmv1.JobState_JOB_STATE_PENDING {
		t.Errorf("waiting job event: %v, %q; want PENDING, %q", got.GetState(), got.GetWaitingReason(), want)
	}
	listed, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{States: []imagefarmv1.JobState{imagefarmv1.JobState_JOB_STATE_PENDING}})
	if err != nil || len(listed.GetJobs()) != 1 || listed.GetJobs()[0].GetWaitingReason() != want {
		t.Errorf("ListJobs of pending jobs = %v, %v; want the second job, waiting for %q", listed.GetJobs(), err, want)
	}

	reinserted := usbDrive("d1")
	reinserted.Serial = "SN-another-key"
	im.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveInserted{DriveInserted: &imagefarmv1.DriveInserted{Drive: reinserted}}})
	a := im.Assignment()
	if a.GetJobId() != second.GetId() || a.GetDrive().GetSerial() != "SN-another-key" {
		t.Errorf("after the re-insert, assignment %v; want job %s on the new key", a, second.GetId())
	}
	nextJobEvent(t, events, "the reason cleared", func(j *imagefarmv1.Job) bool { return j.GetWaitingReason() == "" })
	im.Result(a, imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	if done := waitJob(t, f, second.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED); done.GetWaitingReason() != "" {
		t.Errorf("the second job ended waiting for %q, want nothing", done.GetWaitingReason())
	}
}

// TestCanceledJobWaitsForNothing cancels a waiting job: a final job keeps
// no reason.
func TestCanceledJobWaitsForNothing(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	f.Connect(t, "n1", usbDrive("d1"))
	resp, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1",
		Targets: order(2, &imagefarmv1.Selector{Pool: "bench", MinSizeBytes: 1 << 30})})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetJob().GetId()
	events := jobEvents(t, f, id, resp.GetJob().GetRevision()+1)
	got := nextJobEvent(t, events, "a waiting reason", func(j *imagefarmv1.Job) bool { return j.GetWaitingReason() != "" })
	if !strings.Contains(got.GetWaitingReason(), "needs 2 more drives: 1 smaller than 1.0 GiB (1073741824 bytes) (n1/d1)") {
		t.Errorf("waiting reason %q, want d1 named too small", got.GetWaitingReason())
	}
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	if job := waitJob(t, f, id, imagefarmv1.JobState_JOB_STATE_CANCELED); job.GetWaitingReason() != "" {
		t.Errorf("a canceled job waits for %q, want nothing", job.GetWaitingReason())
	}
}
