package controller_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// pushWindowsDisk pushes a Windows disk image made by NewWindowsDisk as
// windows:1.
func pushWindowsDisk(t *testing.T, f *farm.Farm, opts testenv.WindowsDiskOptions) *testenv.WindowsDisk {
	t.Helper()
	d := testenv.NewWindowsDisk(t, opts)
	file, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := f.Catalog.Push(t.Context(), file, d.Size, catalog.PushOptions{Name: "windows", Version: "1", Kind: catalog.KindDisk}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPartitionJobsRefusedAtSubmit checks that a partition-aware job no
// drive could run is refused at submit, InvalidArgument, saying why.
func TestPartitionJobsRefusedAtSubmit(t *testing.T) {
	testenv.RequireRoot(t)
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	f.Connect(t, "n1", usbDrive("d1")).Beat()
	pushWindowsDisk(t, f, testenv.WindowsDiskOptions{WindowsSize: 48 << 20})
	for _, tc := range []struct {
		name string
		ref  string
		opts *imagefarmv1.JobOptions
		msg  string
	}{
		{"no such partition", "windows:1", &imagefarmv1.JobOptions{Partitions: []uint32{7}},
			"--partition 7 of image windows: bad partition selection: the image has no partition 7 (it has 1 EFI system, 2 Microsoft reserved, 3 Microsoft basic data, 4 Windows recovery)"},
		{"partition 0", "windows:1", &imagefarmv1.JobOptions{KeepPartitions: []uint32{0}}, "partition 0: partitions are numbered from 1"},
		{"huge number", "windows:1", &imagefarmv1.JobOptions{Partitions: []uint32{4294967295}}, "partition 4294967295: partitions are numbered from 1"},
		{"named twice", "windows:1", &imagefarmv1.JobOptions{KeepPartitions: []uint32{4, 4}}, "partition 4 is named twice"},
		{"both", "windows:1", &imagefarmv1.JobOptions{Partitions: []uint32{3}, KeepPartitions: []uint32{4}}, "--partition and --keep exclude each other"},
		{"capacity check", "windows:1", &imagefarmv1.JobOptions{Partitions: []uint32{3}, CheckCapacity: true}, "cannot be asked with --partition or --keep"},
		{"image not GPT", "img:1", &imagefarmv1.JobOptions{Partitions: []uint32{1}}, "--partition 1 of image img: no GUID partition table: no partition table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: tc.ref, Targets: explicit("n1/d1"), Options: tc.opts})
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.msg) || internalTag.MatchString(st.Message()) {
				t.Errorf("SubmitJob(%v) = %v; want InvalidArgument with %q", tc.opts, err, tc.msg)
			}
		})
	}
	jobs, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{})
	if err != nil || len(jobs.GetJobs()) != 0 {
		t.Errorf("ListJobs = %v, %v; want no job from refused submits", jobs, err)
	}
}

// TestDeviceJobKeepsRecovery runs a --keep 4 job on a device through the
// in-process farm: the deploy environment writes the image around the
// laptop's recovery partition, which stays byte-identical.
func TestDeviceJobKeepsRecovery(t *testing.T) {
	testenv.RequireRoot(t)
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second})
	image := pushWindowsDisk(t, f, testenv.WindowsDiskOptions{WindowsSize: 48 << 20})
	boot := bootService(t, f)
	l := newLaptop(t, 41, elitebook)
	old := testenv.NewWindowsDisk(t, testenv.WindowsDiskOptions{WindowsSize: 48 << 20, Files: map[string]string{"Users/bob/x.txt": "bob"}})
	if err := os.Rename(old.Path, l.disk); err != nil {
		t.Fatal(err)
	}
	old.Path = l.disk
	recBefore := old.PartitionSHA256(t, testenv.RecoveryPartition)
	resp, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "windows:1", Targets: deviceTargets(l.id.GetSerial()),
		Options: &imagefarmv1.JobOptions{KeepPartitions: []uint32{testenv.RecoveryPartition}}})
	if err != nil {
		t.Fatal(err)
	}
	out := deployNow(t, f, boot, l)
	if out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("device task %v, want DONE", out.Result)
	}
	waitJob(t, f, resp.GetJob().GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if got := old.PartitionSHA256(t, testenv.RecoveryPartition); got != recBefore {
		t.Errorf("the laptop's recovery partition changed")
	}
	for _, n := range []int{testenv.EFIPartition, testenv.MSRPartition, testenv.WindowsPartition} {
		if got, want := old.PartitionSHA256(t, n), image.PartitionSHA256(t, n); got != want {
			t.Errorf("partition %d is not the image's", n)
		}
	}
}
