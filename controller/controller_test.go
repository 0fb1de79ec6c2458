package controller_test

import (
	"fmt"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

func usbDrive(id string) *imagefarmv1.Drive {
	return &imagefarmv1.Drive{Id: id, Serial: "SN-" + id, SizeBytes: 64 << 20, Removable: true,
		Transport: imagefarmv1.Transport_TRANSPORT_USB, State: imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE}
}

func waitJob(t *testing.T, f *farm.Farm, id string, want imagefarmv1.JobState) *imagefarmv1.Job {
	t.Helper()
	var job *imagefarmv1.Job
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("job %s %v", id, want), func() bool {
		resp, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: id})
		job = resp.GetJob()
		return err == nil && job.GetState() == want
	})
	return job
}

func TestExplicitJobRunsToSuccessAndWatchSeesEveryEventOnce(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	im := f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"))
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1",
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: []string{"n1/d1", "n1/d2"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	job := sub.GetJob()
	if job.GetManifestDigest() != f.Digest {
		t.Errorf("job pinned %s, want %s", job.GetManifestDigest(), f.Digest)
	}
	for range 2 {
		a := im.Assignment()
		if a.GetEpoch() != im.Epoch() || a.GetDrive().GetSerial() != "SN-"+a.GetDrive().GetId() || a.GetManifestDigest() != f.Digest {
			t.Errorf("assignment %v: want epoch %d, the drive's serial and the digest", a, im.Epoch())
		}
		im.Result(a, imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	}
	done := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if done.GetTaskCounts().GetDone() != 2 {
		t.Errorf("task counts %v, want 2 done", done.GetTaskCounts())
	}
	w, err := f.API.WatchJob(t.Context(), &imagefarmv1.WatchJobRequest{JobId: job.GetId(), FromRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	var final bool
	for {
		resp, err := w.Recv()
		if err != nil {
			break // the watch of one job ends after its final event
		}
		ev := resp.GetEvent()
		if ev.GetKind() == imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
			continue
		}
		if seen[ev.GetRevision()] {
			t.Errorf("revision %d seen twice", ev.GetRevision())
		}
		seen[ev.GetRevision()] = true
		final = ev.GetJob().GetState() == imagefarmv1.JobState_JOB_STATE_SUCCEEDED
	}
	if !final || len(seen) < 5 {
		t.Errorf("watch saw %d events, final %v; want submit, tasks, running, succeeded", len(seen), final)
	}
}
