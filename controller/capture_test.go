package controller_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// referenceDisk fills l's internal disk with a factory install of 16 MiB,
// four 4 MiB chunks: a pattern, zeros, another pattern, the first again.
func referenceDisk(t *testing.T, l *laptop) []byte {
	t.Helper()
	const chunk = catalog.DefaultChunkSize
	disk := make([]byte, 4*chunk)
	copy(disk, bytes.Repeat([]byte("factory-A "), chunk/10))
	copy(disk[2*chunk:], bytes.Repeat([]byte("factory-B "), chunk/10))
	copy(disk[3*chunk:], disk[:chunk])
	if err := os.WriteFile(l.disk, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	return disk
}

// enrolledOnce makes the farm know l, as its first netboot does: a job
// waiting for some other device lets it enroll, it gets no work, and the
// job is canceled.
func enrolledOnce(t *testing.T, f *farm.Farm, boot imagefarmv1.DeviceServiceClient, l *laptop) {
	t.Helper()
	job, err := submitDevice(t, f, "img:1", deviceTargets("NOT-"+l.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	if out := deployNow(t, f, boot, l); out.Enrolled.GetAssignment() != nil {
		t.Fatalf("enrollment of %s got work %v, want none", l.id.GetSerial(), out.Enrolled.GetAssignment())
	}
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
}

func submitCapture(t *testing.T, api imagefarmv1.ImageFarmServiceClient, serial, ref string) (*imagefarmv1.Job, error) {
	t.Helper()
	resp, err := api.SubmitCapture(t.Context(), &imagefarmv1.SubmitCaptureRequest{DeviceSerial: serial, ImageRef: ref})
	return resp.GetJob(), err
}

// TestCaptureDeviceEndToEnd: a reference laptop's internal disk is
// captured through the controller (never a store credential on the
// device): chunked, its zero chunk not stored, its repeated chunk sent
// once, tagged with its model and signed by the controller's key; the job
// says what was read, sent and stored. A second capture of the same disk
// sends nothing (every chunk is stored: a capture cut short resumes the
// same way). The capture deploys to a laptop of the same model, whose disk
// then holds the reference's bytes, and an order for another model is
// refused by the exact-model rule.
func TestCaptureDeviceEndToEnd(t *testing.T) {
	key, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true,
		Controller: func(c *controller.Config) { c.SignKey = key }})
	boot := bootService(t, f)
	ref, twin := newLaptop(t, 11, elitebook), newLaptop(t, 12, elitebook)
	enrolledOnce(t, f, boot, ref)
	disk := referenceDisk(t, ref)
	if err := os.WriteFile(twin.disk, bytes.Repeat([]byte("old twin"), len(disk)/8), 0o600); err != nil {
		t.Fatal(err)
	}

	job, err := submitCapture(t, f.API, ref.id.GetSerial(), "elitebook-factory:1")
	if err != nil {
		t.Fatalf("SubmitCapture = %v", err)
	}
	out := deployNow(t, f, boot, ref)
	if out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("capture result %v, want DONE", out.Result)
	}
	done := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	c := done.GetTasks()[0].GetCapture()
	if c.GetDigest() == "" || c.GetModel() != elitebook || c.GetBytesRead() != uint64(len(disk)) || c.GetChunks() != 4 ||
		c.GetZeroChunks() != 1 || c.GetChunksSent() != 2 || c.GetChunksDeduplicated() != 0 || c.GetSignedBy() != key.ID || c.GetUnsignedReason() != "" {
		t.Errorf("capture result %v: want 16 MiB read, 4 chunks, 1 zero, 2 sent, tagged %q, signed by %s", c, elitebook, key.ID)
	}
	if !bytes.Equal(disk, mustRead(t, ref.disk)) {
		t.Error("the capture changed the reference's disk")
	}
	m, digest, err := f.Catalog.Manifest(t.Context(), catalog.Ref{Name: "elitebook-factory", Tag: "1"})
	if err != nil || digest != c.GetDigest() || len(m.Models) != 1 || m.Models[0] != elitebook || m.Kind != catalog.KindDisk {
		t.Fatalf("elitebook-factory:1 = %v, %s, %v; want the capture %s, a disk for %q", m, digest, err, c.GetDigest(), elitebook)
	}
	if _, err := f.Catalog.Verify(t.Context(), m, digest, catalog.NewKeyRing(key.Public(""))); err != nil {
		t.Errorf("the capture's signature: %v", err)
	}
	if push := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH); len(push) != 1 || push[0].GetImageDigest() != digest ||
		push[0].GetDeviceId() != out.Enrolled.GetDevice().GetId() || push[0].GetJobId() != job.GetId() {
		t.Errorf("image.push records %v, want one for the capture by the device", push)
	}

	again, err := submitCapture(t, f.API, ref.id.GetSerial(), "elitebook-factory:2")
	if err != nil {
		t.Fatal(err)
	}
	deployNow(t, f, boot, ref)
	c2 := waitJob(t, f, again.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED).GetTasks()[0].GetCapture()
	if c2.GetChunksSent() != 0 || c2.GetChunksDeduplicated() != 2 || c2.GetBytesStored() != 0 {
		t.Errorf("the second capture %v: want nothing sent, the 2 stored chunks deduplicated", c2)
	}

	deploy, err := submitDevice(t, f, "elitebook-factory:1", deviceTargets(twin.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	deployNow(t, f, boot, twin)
	waitJob(t, f, deploy.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if got := mustRead(t, twin.disk); sha256.Sum256(got[:len(disk)]) != sha256.Sum256(disk) {
		t.Error("the twin's disk does not hold the reference's bytes")
	}
	_, err = submitDevice(t, f, "elitebook-factory:1", orderTargets(latitude, 1))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), elitebook) || !strings.Contains(err.Error(), latitude) {
		t.Errorf("an order of %q for the capture = %v, want FailedPrecondition naming both models", latitude, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCaptureRefusals: a capture the farm could never store is refused
// at submit with a message saying what to do, and no job is created: a
// viewer's, a device with no record, a missing or malformed serial, a
// malformed ref, a version that exists, a version another job captures,
// and a device with two internal disks and none named.
func TestCaptureRefusals(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	l := newLaptop(t, 13, elitebook)
	enrolledOnce(t, f, boot, l)
	twoDisks := newLaptop(t, 14, elitebook)
	if err := os.WriteFile(filepath.Join(twoDisks.dir, "nvme1n1"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	enrolledOnce(t, f, boot, twoDisks)
	viewer := imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(createToken(t, f, "v", imagefarmv1.Role_ROLE_VIEWER))))
	taken, err := submitCapture(t, f.API, l.id.GetSerial(), "taken:1")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the capture job says it waits for its device", func() bool {
		resp, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: taken.GetId()})
		return err == nil && strings.Contains(resp.GetJob().GetWaitingReason(), "device "+l.id.GetSerial()+" to netboot")
	})
	before := jobCount(t, f)
	for _, tc := range []struct {
		name        string
		api         imagefarmv1.ImageFarmServiceClient
		serial, ref string
		code        codes.Code
		says        string
	}{
		{"viewer", viewer, l.id.GetSerial(), "new:1", codes.PermissionDenied, "operator"},
		{"no record", f.API, "5CG9999XYZ", "new:1", codes.NotFound, "netboot"},
		{"no serial", f.API, "", "new:1", codes.InvalidArgument, "serial"},
		{"control character", f.API, "5CG\x00", "new:1", codes.InvalidArgument, "serial"},
		{"no version", f.API, l.id.GetSerial(), "new", codes.InvalidArgument, "NAME"},
		{"a digest", f.API, l.id.GetSerial(), "new@" + f.Digest, codes.InvalidArgument, "NAME:VERSION"},
		{"version exists", f.API, l.id.GetSerial(), "img:1", codes.AlreadyExists, "new version"},
		{"captured by another job", f.API, l.id.GetSerial(), "taken:1", codes.FailedPrecondition, "already captures"},
		{"two internal disks", f.API, twoDisks.id.GetSerial(), "new:1", codes.FailedPrecondition, "--disk"},
	} {
		_, err := submitCapture(t, tc.api, tc.serial, tc.ref)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: SubmitCapture(%q, %q) = %v, want %v saying %q", tc.name, tc.serial, tc.ref, err, tc.code, tc.says)
		}
	}
	// An after-write the enum does not have, on a capture or a write.
	if _, err := f.API.SubmitCapture(t.Context(), &imagefarmv1.SubmitCaptureRequest{DeviceSerial: l.id.GetSerial(), ImageRef: "new:1",
		After: 99}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SubmitCapture(after 99) = %v, want InvalidArgument", err)
	}
	if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: deviceTargets(l.id.GetSerial()),
		Options: &imagefarmv1.JobOptions{AfterWrite: 99}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SubmitJob(after write 99) = %v, want InvalidArgument", err)
	}
	if after := jobCount(t, f); after != before {
		t.Errorf("%d jobs after the refusals, want %d: a refusal creates nothing", after, before)
	}
	// The controller has no signing key: the capture is stored unsigned,
	// and its result says so.
	deployNow(t, f, boot, l)
	c := waitJob(t, f, taken.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED).GetTasks()[0].GetCapture()
	if c.GetSignedBy() != "" || !strings.Contains(c.GetUnsignedReason(), "--sign-key") {
		t.Errorf("capture by a controller without a key: %v, want unsigned, saying --sign-key", c)
	}
}

func jobCount(t *testing.T, f *farm.Farm) int {
	t.Helper()
	resp, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetJobs())
}

// TestCaptureUploadRefusals: the Capture stream, driven by a simulated
// device: a device whose task writes may upload nothing, and a chunk
// whose bytes do not match its id is refused, nothing stored for it, and
// fails the capture naming the chunk; no version is made, and the
// controller without a key would have said the capture is unsigned.
func TestCaptureUploadRefusals(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	l := newLaptop(t, 15, elitebook)
	enrolledOnce(t, f, boot, l)
	dev := imagefarmv1.NewDeviceServiceClient(deviceConn(t, f))
	enroll := func() (*imagefarmv1.EnrollResponse, grpc.CallOption) {
		t.Helper()
		p := planBoot(t, boot, l.mac)
		resp, err := dev.Enroll(t.Context(), &imagefarmv1.EnrollRequest{BootToken: p.GetBootToken(), BootMac: l.mac, Identity: l.id,
			Macs: []string{l.mac}, Disks: []*imagefarmv1.Drive{{Id: "nvme0n1", Serial: "nvme0n1", SizeBytes: 4 << 20,
				Transport: imagefarmv1.Transport_TRANSPORT_VIRTUAL}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp, grpc.PerRPCCredentials(tokens.Bearer{Secret: resp.GetCredential()})
	}

	write, err := submitDevice(t, f, "img:1", deviceTargets(l.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	resp, cred := enroll()
	a := resp.GetAssignment()
	stream, err := dev.Capture(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&imagefarmv1.CaptureRequest{Body: &imagefarmv1.CaptureRequest_Begin{Begin: &imagefarmv1.CaptureBegin{TaskId: a.GetTaskId(), Epoch: a.GetEpoch()}}})
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "captures nothing") {
		t.Errorf("Capture for a write task = %v, want PermissionDenied", err)
	}
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: write.GetId()}); err != nil {
		t.Fatal(err)
	}

	job, err := submitCapture(t, f.API, l.id.GetSerial(), "cap:1")
	if err != nil {
		t.Fatal(err)
	}
	resp, cred = enroll()
	a = resp.GetAssignment()
	if a.GetCapture().GetName() != "cap" || a.GetManifestDigest() != "" {
		t.Fatalf("assignment %v, want a capture of cap:1", a)
	}
	if _, err := dev.StatObject(t.Context(), &imagefarmv1.StatObjectRequest{Key: "manifests/x"}, cred); status.Code(err) != codes.PermissionDenied {
		t.Errorf("StatObject during a capture = %v, want PermissionDenied", err)
	}
	stream, err = dev.Capture(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	claimed := bytes.Repeat([]byte("claimed "), 1024)
	sum := sha256.Sum256(claimed)
	id := hex.EncodeToString(sum[:])
	for _, m := range []*imagefarmv1.CaptureRequest{
		{Body: &imagefarmv1.CaptureRequest_Begin{Begin: &imagefarmv1.CaptureBegin{TaskId: a.GetTaskId(), Epoch: a.GetEpoch()}}},
		{Body: &imagefarmv1.CaptureRequest_Offer{Offer: &imagefarmv1.ChunkOffer{Id: id, Offset: 0, Length: int64(len(claimed))}}},
	} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := stream.Recv(); err != nil || r.GetWanted().GetId() != id {
		t.Fatalf("answer to the offer = %v, %v; want the chunk wanted", r, err)
	}
	sent := bytes.Repeat([]byte("forged! "), 1024)
	stream.Send(&imagefarmv1.CaptureRequest{Body: &imagefarmv1.CaptureRequest_Piece{Piece: &imagefarmv1.ChunkPiece{Id: id, Data: sent, Last: true}}})
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), id) {
		t.Errorf("a chunk whose bytes are not its id = %v, want InvalidArgument naming %s", err, id)
	}
	failed := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_FAILED).GetTasks()[0]
	if !strings.Contains(failed.GetFailure().GetMessage(), id) || failed.GetFailure().GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT {
		t.Errorf("the capture task ended %v, want CHUNK_CORRUPT naming %s", failed.GetFailure(), id)
	}
	for _, s := range [][]byte{claimed, sent} {
		sum := sha256.Sum256(s)
		key := "chunks/" + hex.EncodeToString(sum[:1]) + "/" + hex.EncodeToString(sum[:])
		if _, err := f.Catalog.Store().Stat(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want not found: nothing is stored for a refused chunk", key, err)
		}
	}
	if _, _, err := f.Catalog.Manifest(t.Context(), catalog.Ref{Name: "cap", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("cap:1 after the refused capture: %v, want ErrNotFound", err)
	}

	// A device cannot end its capture DONE by reporting it: only the
	// controller does, once it has stored the capture.
	job, err = submitCapture(t, f.API, l.id.GetSerial(), "cap:2")
	if err != nil {
		t.Fatal(err)
	}
	resp, cred = enroll()
	a = resp.GetAssignment()
	rep, err := dev.Report(t.Context(), cred)
	if err != nil {
		t.Fatal(err)
	}
	rep.Send(&imagefarmv1.ReportRequest{Seq: 1, Body: &imagefarmv1.ReportRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_DONE}}})
	if r, err := rep.Recv(); err != nil || r.GetAck().GetSeq() != 1 {
		t.Fatalf("answer to the result = %v, %v; want its ack", r, err)
	}
	faked := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_FAILED).GetTasks()[0]
	if !strings.Contains(faked.GetFailure().GetMessage(), "capture DONE") {
		t.Errorf("a capture the device reported DONE ended %v, want FAILED saying a capture DONE cannot be reported", faked.GetFailure())
	}
}
