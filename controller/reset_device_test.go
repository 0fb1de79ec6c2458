package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// resetLaptop is a laptop whose internal disk is testenv's Windows disk
// (GPT: EFI, MSR, Windows with a user's files, Wi-Fi profiles and a
// provisioning package, recovery with WinRE) with a SYSTEM hive.
func resetLaptop(t *testing.T, n int, opts testenv.WindowsDiskOptions) (*laptop, *testenv.WindowsDisk) {
	t.Helper()
	hive, err := os.ReadFile("../deployenv/reset/testdata/minimal.hive") // hivex's own minimal hive: no domain, no Azure AD join
	if err != nil {
		t.Fatal(err)
	}
	opts.Files = map[string]string{"Windows/System32/config/SYSTEM": string(hive)}
	d := testenv.NewWindowsDisk(t, opts)
	l := newLaptop(t, n, elitebook)
	if err := os.Rename(d.Path, l.disk); err != nil {
		t.Fatal(err)
	}
	d.Path = l.disk
	return l, d
}

// pushResetWIM pushes the Windows a reset applies and returns its files.
func pushResetWIM(t *testing.T, f *farm.Farm) map[string]string {
	t.Helper()
	files := map[string]string{
		"Windows/System32/ntoskrnl.exe":                "MZ new Windows kernel\n",
		"Windows/explorer.exe":                         "MZ explorer\n",
		"ProgramData/Microsoft/Wlansvc/Profiles/.keep": "",
		"Users/Default/NTUSER.DAT":                     "regf default profile\n",
	}
	data, err := os.ReadFile(testenv.CaptureWIM(t, files, "Windows 11 Enterprise"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Catalog.Push(t.Context(), strings.NewReader(string(data)), int64(len(data)),
		catalog.PushOptions{Name: "win11", Version: "1", Kind: catalog.KindWIM}); err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDeviceResetEndToEnd: a known laptop whose policy allows reset gets a
// reset job; it netboots, enrolls and the deploy environment's side runs
// the reset engine on its disk, the WIM read through the controller. The
// power is cut (its deploy environment stopped) once the reset has
// reported a write step, after its keep-list was saved to the controller;
// its next network boot redoes the reset from that state. Then: alice's
// profile is gone, the WIM's files are there, every kept file is the same
// by hash (and the task's record lists each with its hash before and
// after), the EFI, MSR and recovery partitions are byte for byte the same,
// and the controller no longer holds the device's reset state.
func TestDeviceResetEndToEnd(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	wimFiles := pushResetWIM(t, f)
	order, err := submitDevice(t, f, "img:1", orderTargets("Nobody's Model", 5))
	if err != nil {
		t.Fatal(err)
	}
	l, disk := resetLaptop(t, 51, testenv.WindowsDiskOptions{})
	l.usb = []string{filepath.Join(t.TempDir(), "Depot.ppkg")}
	if err := os.WriteFile(l.usb[0], []byte("PK\x03\x04 the depot's package on a USB key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noRE, _ := resetLaptop(t, 52, testenv.WindowsDiskOptions{NoWinRE: true})
	knownDevice(t, f, boot, l)
	knownDevice(t, f, boot, noRE)
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: order.GetId()}); err != nil {
		t.Fatal(err)
	}
	untouched := map[int]string{}
	for _, n := range []int{testenv.EFIPartition, testenv.MSRPartition, testenv.RecoveryPartition} {
		untouched[n] = disk.PartitionSHA256(t, n)
	}
	if err := setPolicy(t, f.API, byMod, elitebook, allow); err != nil {
		t.Fatal(err)
	}
	job, err := submitReset(t, f.API, "win11:1", l.id.GetSerial())
	if err != nil {
		t.Fatal(err)
	}

	// No WinRE on the disk: NOT_SUPPORTED, 0x80070032, nothing written.
	if _, err := submitReset(t, f.API, "win11:1", noRE.id.GetSerial()); err != nil {
		t.Fatal(err)
	}
	before := noRE.diskSum(t)
	if out := deployNow(t, f, boot, noRE); out.Result.GetFailure().GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_NOT_SUPPORTED ||
		!strings.Contains(out.Result.GetFailure().GetMessage(), "0x80070032") {
		t.Errorf("reset of a disk without WinRE: %v, want NOT_SUPPORTED with 0x80070032", out.Result)
	}
	if noRE.diskSum(t) != before {
		t.Error("the disk without WinRE changed: a refused reset wrote it")
	}

	// The power cut: the first boot's deploy environment is stopped once
	// the reset reports applying (step 4 of 7): the Windows volume has
	// been re-created, its keep-list is only in the controller's state.
	p := planBoot(t, boot, l.mac)
	ctx, cut := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := deployCtx(ctx, t, f, l, p.GetBootToken())
		done <- err
	}()
	testenv.Eventually(t, 3*time.Minute, "the reset applies", func() bool {
		resp, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: job.GetId()})
		ts := resp.GetJob().GetTasks()
		return err == nil && len(ts) > 0 && (ts[0].GetBytesDone() >= 4 || ts[0].GetState().Final())
	})
	cut()
	<-done

	out := deployNow(t, f, boot, l)
	if out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("reset after the power cut: %v, want DONE", out.Result)
	}
	final := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	var rep *imagefarmv1.ResetReport
	for _, task := range final.GetTasks() {
		if task.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE {
			rep = task.GetResetReport()
		}
	}
	unix.Sync()
	loop := disk.AttachPartition(t, testenv.WindowsPartition)
	got := testenv.NTFSFiles(t, loop.Path)
	loop.Detach(t)
	if _, ok := got[testenv.AliceDocument]; ok {
		t.Errorf("%s survived the reset", testenv.AliceDocument)
	}
	for path, content := range wimFiles {
		if got[path] != content {
			t.Errorf("%s on the new volume = %q, want the WIM's %q", path, got[path], content)
		}
	}
	kept := map[string]bool{}
	for _, k := range rep.GetKept() {
		kept[k.GetPath()] = true
		if k.GetSha256Before() == "" || k.GetSha256Before() != k.GetSha256After() {
			t.Errorf("kept %s: sha256 before %q, after %q: want the same", k.GetPath(), k.GetSha256Before(), k.GetSha256After())
		}
	}
	for path, content := range disk.Files {
		if strings.HasPrefix(path, "ProgramData/Microsoft/") && path != "Windows/System32/config/SYSTEM" {
			if !kept[path] || got[path] != content {
				t.Errorf("%s: in the report %v, on the new volume %q; want kept as %q", path, kept[path], got[path], content)
			}
		}
	}
	const usbKept = "Recovery/Customizations/Depot.ppkg"
	if !kept[usbKept] || !strings.Contains(got[usbKept], "the depot's package on a USB key") {
		t.Errorf("the USB key's package: in the report %v, on the new volume %q; want kept", kept[usbKept], got[usbKept])
	}
	if !rep.GetProfilesRemoved() || len(rep.GetSteps()) == 0 {
		t.Errorf("reset report %v: want profiles removed and its steps", rep)
	}
	for n, want := range untouched {
		if got := disk.PartitionSHA256(t, n); got != want {
			t.Errorf("partition %d changed: sha256 %s, want %s", n, got, want)
		}
	}
	if dev := getDevice(t, f, l.id.GetSerial()).GetDevice(); dev.GetLastImageRef() != "win11:1" || dev.GetState() != imagefarmv1.DeviceState_DEVICE_STATE_IDLE {
		t.Errorf("device record %v: want win11:1 last written, idle", dev)
	}
	obs, err := f.JS.ObjectStore(t.Context(), "imagefarm-reset-state")
	if err != nil {
		t.Fatal(err)
	}
	if objs, _ := obs.List(t.Context()); len(objs) != 0 {
		t.Errorf("the controller still holds the reset state %v after the reset ended DONE", objs)
	}
}
