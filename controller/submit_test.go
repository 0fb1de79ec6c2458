package controller_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// submits counts the job.submit records in the audit trail.
func submits(t *testing.T, f *farm.Farm) int {
	t.Helper()
	recs, err := trail(t, f.API)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT {
			n++
		}
	}
	return n
}

// TestRequestIDIsOneRequest: a submit sent again with its request id gets
// its job back, also once the job runs on its drive; the request id sent
// with another image, drive, options or labels is refused with
// AlreadyExists naming the job it made, and no job is made.
func TestRequestIDIsOneRequest(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	pushVersion(t, f, f.Catalog, "img", "2")
	im := f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"))
	first := &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1"), RequestId: "rq1",
		Options: &imagefarmv1.JobOptions{}, Labels: map[string]string{"ticket": "7"}}
	sub, err := f.API.SubmitJob(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	id := sub.GetJob().GetId()
	im.Assignment() // d1 is now busy with the job's own task
	again, err := f.API.SubmitJob(t.Context(), first)
	if err != nil || again.GetJob().GetId() != id {
		t.Fatalf("SubmitJob(the same request again) = %v, %v; want job %s", again.GetJob().GetId(), err, id)
	}
	other := func(edit func(r *imagefarmv1.SubmitJobRequest)) *imagefarmv1.SubmitJobRequest {
		r := &imagefarmv1.SubmitJobRequest{ImageRef: first.ImageRef, Targets: first.Targets, RequestId: first.RequestId,
			Options: &imagefarmv1.JobOptions{}, Labels: map[string]string{"ticket": "7"}}
		edit(r)
		return r
	}
	for _, tc := range []struct {
		name string
		req  *imagefarmv1.SubmitJobRequest
	}{
		{"another image", other(func(r *imagefarmv1.SubmitJobRequest) { r.ImageRef = "img:2" })},
		{"another drive", other(func(r *imagefarmv1.SubmitJobRequest) { r.Targets = explicit("n1/d2") })},
		{"a standing order", other(func(r *imagefarmv1.SubmitJobRequest) { r.Targets = order(1, &imagefarmv1.Selector{}) })},
		{"other options", other(func(r *imagefarmv1.SubmitJobRequest) { r.Options.Discard = true })},
		{"other labels", other(func(r *imagefarmv1.SubmitJobRequest) { r.Labels["ticket"] = "8" })},
	} {
		_, err := f.API.SubmitJob(t.Context(), tc.req)
		want := `request id "rq1" was used for job ` + id + " (img:1 to n1/d1): give another request a new request id"
		if status.Code(err) != codes.AlreadyExists || !strings.HasPrefix(status.Convert(err).Message(), want) {
			t.Errorf("SubmitJob(rq1 with %s) = %v, want AlreadyExists %q", tc.name, err, want)
		}
	}
	list, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{})
	if err != nil || len(list.GetJobs()) != 1 {
		t.Errorf("ListJobs() = %d jobs, %v; want the one job of rq1", len(list.GetJobs()), err)
	}
	if n := submits(t, f); n != 1 {
		t.Errorf("%d job.submit records, want 1", n)
	}
}

// TestOnlyDiskImagesGoOnDrives: a job whose image is not a disk image
// (WinPE files, drivers, a provisioning package, any file) or is empty is
// refused at submit with FailedPrecondition naming the image and its kind,
// and no job is made.
func TestOnlyDiskImagesGoOnDrives(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	f.Connect(t, "n1", usbDrive("d1"))
	push := func(name string, kind catalog.Kind, data []byte) {
		t.Helper()
		_, err := f.Catalog.Push(t.Context(), bytes.NewReader(data), int64(len(data)), catalog.PushOptions{Name: name, Version: "1", Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
	}
	tarball := bytes.Repeat([]byte("winpe"), 1000)
	for _, tc := range []struct {
		name string
		kind catalog.Kind
		data []byte
		want string
	}{
		{"pe", catalog.KindWinPE, tarball, "image pe:1 is a winpe, not a disk image: only disk images are written to drives; build a USB key's disk image from it with imagefarm media build --winpe"},
		{"drv", catalog.KindDrivers, tarball, "image drv:1 is a drivers, not a disk image"},
		{"enroll", catalog.KindPPKG, tarball, "image enroll:1 is a ppkg, not a disk image"},
		{"notes", catalog.KindFile, tarball, "image notes:1 is a file, not a disk image: only disk images are written to drives; push the drive's raw image with --kind disk"},
		{"empty", catalog.KindDisk, nil, "image empty:1 is empty (0 bytes): there is nothing to write to a drive"},
	} {
		push(tc.name, tc.kind, tc.data)
		_, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: tc.name + ":1", Targets: explicit("n1/d1")})
		if status.Code(err) != codes.FailedPrecondition || !strings.HasPrefix(status.Convert(err).Message(), tc.want) {
			t.Errorf("SubmitJob(%s:1, a %s of %d bytes) = %v, want FailedPrecondition %q", tc.name, tc.kind, len(tc.data), err, tc.want)
		}
	}
	list, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{})
	if err != nil || len(list.GetJobs()) != 0 {
		t.Errorf("ListJobs() = %d jobs, %v; want none", len(list.GetJobs()), err)
	}
}
