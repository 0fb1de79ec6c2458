package controller_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/deployenv/device"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

const (
	elitebook = "HP EliteBook 840 G7 Notebook PC"
	latitude  = "Latitude 5420"
)

// laptop is a machine on the depot LAN: its identity, its MAC and its
// internal disk, a file the test hashes itself.
type laptop struct {
	mac  string
	id   *imagefarmv1.DeviceIdentity
	dir  string // its disks: one virtual drive, "internal"
	disk string
	usb  []string // .ppkg files on a USB key attached at boot
}

func newLaptop(t *testing.T, n int, model string) *laptop {
	t.Helper()
	l := &laptop{mac: fmt.Sprintf("52:54:00:00:00:%02x", n), dir: t.TempDir(),
		id: &imagefarmv1.DeviceIdentity{Uuid: fmt.Sprintf("4c4c4544-0000-1000-8000-%012d", n), Serial: fmt.Sprintf("5CG%04dXYZ", n),
			Vendor: "HP", Model: model}}
	l.disk = filepath.Join(l.dir, "nvme0n1")
	if err := os.WriteFile(l.disk, bytes.Repeat([]byte("factory!"), 512<<10), 0o600); err != nil { // 4 MiB of the old install
		t.Fatal(err)
	}
	return l
}

func (l *laptop) diskSum(t *testing.T) [32]byte {
	t.Helper()
	b, err := os.ReadFile(l.disk)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// bootService is the boot service's client: an operator token.
func bootService(t *testing.T, f *farm.Farm) imagefarmv1.DeviceServiceClient {
	t.Helper()
	op := createToken(t, f, "netboot", imagefarmv1.Role_ROLE_OPERATOR)
	return imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(op)))
}

// deviceConn is a deploy environment's connection: TLS, no certificate,
// no token.
func deviceConn(t *testing.T, f *farm.Farm) *grpc.ClientConn {
	t.Helper()
	return f.Dial(t, f.ClientCreds(t, ""))
}

func planBoot(t *testing.T, boot imagefarmv1.DeviceServiceClient, mac string) *imagefarmv1.PlanBootResponse {
	t.Helper()
	resp, err := boot.PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: mac, Arch: "x86_64-efi"})
	if err != nil {
		t.Fatalf("PlanBoot(%s) = %v", mac, err)
	}
	return resp
}

// deploy boots l into the deploy environment with token and runs it.
func deploy(t *testing.T, f *farm.Farm, l *laptop, token string) (device.Outcome, error) {
	t.Helper()
	return deployCtx(t.Context(), t, f, l, token)
}

// deployCtx is deploy until ctx ends: a power cut.
func deployCtx(ctx context.Context, t *testing.T, f *farm.Farm, l *laptop, token string) (device.Outcome, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // a hang fails the test, naming where
	defer cancel()
	return device.Run(ctx, device.Config{Scratch: t.TempDir(), USBPackages: l.usb, Conn: deviceConn(t, f), BootToken: token, BootMAC: l.mac, MACs: []string{l.mac},
		Identity: l.id, Arch: "x86_64-efi", Drives: drive.Config{VirtualDir: l.dir, VirtualOnly: true},
		HeartbeatInterval: 200 * time.Millisecond})
}

// deployNow plans l's boot, which must be DEPLOY, and runs it.
func deployNow(t *testing.T, f *farm.Farm, boot imagefarmv1.DeviceServiceClient, l *laptop) device.Outcome {
	t.Helper()
	p := planBoot(t, boot, l.mac)
	if p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY || !strings.HasPrefix(p.GetBootToken(), "ifb_") {
		t.Fatalf("PlanBoot(%s) = %v, want DEPLOY with a boot token", l.mac, p)
	}
	out, err := deploy(t, f, l, p.GetBootToken())
	if err != nil {
		t.Fatalf("deploy %s: %v", l.id.GetSerial(), err)
	}
	return out
}

func submitDevice(t *testing.T, f *farm.Farm, ref string, targets *imagefarmv1.Targets) (*imagefarmv1.Job, error) {
	t.Helper()
	resp, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: ref, Targets: targets})
	return resp.GetJob(), err
}

func deviceTargets(serials ...string) *imagefarmv1.Targets {
	l := &imagefarmv1.DeviceList{}
	for _, s := range serials {
		l.Devices = append(l.Devices, &imagefarmv1.DeviceTarget{Serial: s})
	}
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: l}}
}

func orderTargets(model string, count uint32) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{Model: model, Count: count}}}
}

// pushFor pushes an image for models (universal when none) and returns
// its bytes' hash.
func pushFor(t *testing.T, f *farm.Farm, name string, models ...string) {
	t.Helper()
	img := bytes.Repeat([]byte(name), 300000)
	if _, err := f.Catalog.Push(t.Context(), bytes.NewReader(img), int64(len(img)), catalog.PushOptions{Name: name, Version: "1",
		Kind: catalog.KindDisk, Models: models}); err != nil {
		t.Fatal(err)
	}
}

// records are the audit records of an action.
func records(t *testing.T, f *farm.Farm, action imagefarmv1.AuditAction) []*imagefarmv1.AuditRecord {
	t.Helper()
	recs, err := trail(t, f.API)
	if err != nil {
		t.Fatal(err)
	}
	var out []*imagefarmv1.AuditRecord
	for _, r := range recs {
		if r.GetAction() == action {
			out = append(out, r)
		}
	}
	return out
}

// TestDeviceDeploysEndToEnd: a laptop nobody has seen netboots while a job
// waits for its serial: PlanBoot sends it to the deploy environment, it
// enrolls, gets its task, writes its file-backed internal disk with the
// imager's pipeline through the controller's read path, verifies it and
// reports; the job succeeds, the device record shows what was written,
// and its next boot is its local disk.
func TestDeviceDeploysEndToEnd(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	l := newLaptop(t, 1, elitebook)
	if p := planBoot(t, boot, l.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT || p.GetBootToken() != "" {
		t.Fatalf("PlanBoot with no job = %v, want LOCAL_BOOT and no token", p)
	}
	job, err := submitDevice(t, f, "img:1", deviceTargets(l.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	out := deployNow(t, f, boot, l)
	if out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || out.Result.GetVerifiedDigest() != f.Digest {
		t.Fatalf("result %v, want DONE verified against %s", out.Result, f.Digest)
	}
	if out.Then != imagefarmv1.AfterWrite_AFTER_WRITE_REBOOT {
		t.Errorf("then %v, want REBOOT", out.Then)
	}
	img := farm.Image
	disk, _ := os.ReadFile(l.disk)
	if !bytes.Equal(disk[:len(img)], img) {
		t.Error("the internal disk does not start with the image")
	}
	done := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	resp, err := f.API.GetDevice(t.Context(), &imagefarmv1.GetDeviceRequest{Device: l.id.GetSerial()})
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDevice()
	if d.GetLastImageDigest() != f.Digest || d.GetLastImageRef() != "img:1" || d.GetLastJobId() != job.GetId() ||
		d.GetLastTaskId() != done.GetTasks()[0].GetId() || d.GetLastWriteTime() == nil ||
		d.GetState() != imagefarmv1.DeviceState_DEVICE_STATE_IDLE || d.GetModel() != elitebook || d.GetMacs()[0] != l.mac {
		t.Errorf("device record %v: want img:1 %s by job %s, idle", d, f.Digest, job.GetId())
	}
	if p := planBoot(t, boot, l.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot after the verified write = %v, want LOCAL_BOOT", p)
	}
	if en := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_DEVICE_ENROLL); len(en) != 1 || en[0].GetDeviceId() != d.GetId() ||
		en[0].GetJobId() != job.GetId() || en[0].GetMac() != l.mac {
		t.Errorf("device.enroll records %v, want one for %s with job %s", en, d.GetId(), job.GetId())
	}
	list, err := f.API.ListDevices(t.Context(), &imagefarmv1.ListDevicesRequest{Model: elitebook})
	if err != nil || len(list.GetDevices()) != 1 {
		t.Errorf("ListDevices(model) = %v, %v; want the laptop", list, err)
	}
}

// TestBootTokenSingleUseUnderARace: two deploy environments enroll with one
// token at once: one wins, the other is refused and audited.
func TestBootTokenSingleUseUnderARace(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	l := newLaptop(t, 2, elitebook)
	if _, err := submitDevice(t, f, "img:1", orderTargets(elitebook, 5)); err != nil {
		t.Fatal(err)
	}
	token := planBoot(t, boot, l.mac).GetBootToken()
	dev := imagefarmv1.NewDeviceServiceClient(deviceConn(t, f))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = dev.Enroll(t.Context(), &imagefarmv1.EnrollRequest{BootToken: token, BootMac: l.mac, Identity: l.id})
		})
	}
	wg.Wait()
	ok, denied := 0, 0
	for _, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.PermissionDenied:
			denied++
		default:
			t.Errorf("Enroll = %v, want OK or PermissionDenied", err)
		}
	}
	if ok != 1 || denied != 1 {
		t.Errorf("%d enrollments won and %d were refused, want 1 and 1", ok, denied)
	}
	if refused := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_TOKEN_REFUSED); len(refused) != 1 ||
		!strings.Contains(refused[0].GetMessage(), "already used") || refused[0].GetMac() != l.mac {
		t.Errorf("boot_token.refused records %v, want one saying already used, for %s", refused, l.mac)
	}
}

// TestBootTokenRefusals: a replayed token, a token used for another MAC,
// an expired one and a forged one are refused with PERMISSION_DENIED, each
// audited with why; a malformed request is refused first and leaves the
// token usable.
func TestBootTokenRefusals(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	l := newLaptop(t, 3, elitebook)
	if _, err := submitDevice(t, f, "img:1", orderTargets(elitebook, 5)); err != nil {
		t.Fatal(err)
	}
	dev := imagefarmv1.NewDeviceServiceClient(deviceConn(t, f))
	enroll := func(token, mac string) error {
		_, err := dev.Enroll(t.Context(), &imagefarmv1.EnrollRequest{BootToken: token, BootMac: mac, Identity: l.id})
		return err
	}
	token := planBoot(t, boot, l.mac).GetBootToken()
	if err := enroll(token, "not a mac"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Enroll(bad MAC) = %v, want InvalidArgument", err)
	}
	if err := enroll(token, "52:54:00:ff:ff:ff"); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "another MAC") {
		t.Errorf("Enroll(another MAC) = %v, want PermissionDenied naming another MAC", err)
	}
	if err := enroll(token, l.mac); err != nil {
		t.Fatalf("Enroll after refusals = %v, want the token still good", err)
	}
	if err := enroll(token, l.mac); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already used") {
		t.Errorf("Enroll(replay) = %v, want PermissionDenied saying already used", err)
	}
	if err := enroll("ifb_forged", l.mac); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("Enroll(forged) = %v, want PermissionDenied saying unknown", err)
	}
	refused := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_TOKEN_REFUSED)
	var got []string
	for _, r := range refused {
		got = append(got, r.GetMac()+" "+strings.SplitN(r.GetMessage(), ": ", 2)[1])
	}
	want := []string{"52:54:00:ff:ff:ff enroll: boot token refused: issued for another MAC", "52:54:00:00:00:03 enroll: boot token refused: already used",
		"52:54:00:00:00:03 enroll: boot token refused: unknown"}
	if len(got) != len(want) {
		t.Fatalf("refusals audited %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("refusal %d audited %q, want it to start %q", i, got[i], want[i])
		}
	}

	short := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true,
		Controller: func(c *controller.Config) { c.Devices.BootTokenTTL = time.Nanosecond }})
	if _, err := submitDevice(t, short, "img:1", orderTargets(elitebook, 5)); err != nil {
		t.Fatal(err)
	}
	expired := planBoot(t, bootService(t, short), l.mac).GetBootToken()
	_, err := imagefarmv1.NewDeviceServiceClient(deviceConn(t, short)).Enroll(t.Context(),
		&imagefarmv1.EnrollRequest{BootToken: expired, BootMac: l.mac, Identity: l.id})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Enroll(expired) = %v, want PermissionDenied saying expired", err)
	}
	if r := records(t, short, imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_TOKEN_REFUSED); len(r) != 1 || !strings.Contains(r[0].GetMessage(), "expired") {
		t.Errorf("refusals audited %v, want one expired", r)
	}
}

// TestModelMismatchRefusedNamingBothModels: an image tagged for one model
// is refused at submit for a known device of another, and for an order of
// another model; a device unknown at submit is refused when it enrolls,
// its task FAILED naming both models, its disk unchanged.
func TestModelMismatchRefusedNamingBothModels(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	pushFor(t, f, "hp", elitebook)
	dell := newLaptop(t, 4, latitude)
	if _, err := submitDevice(t, f, "hp:1", orderTargets(latitude, 1)); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), elitebook) || !strings.Contains(err.Error(), latitude) {
		t.Errorf("submit an order for %s of an image for %s = %v, want FailedPrecondition naming both", latitude, elitebook, err)
	}
	job, err := submitDevice(t, f, "hp:1", deviceTargets(dell.id.GetSerial()))
	if err != nil {
		t.Fatalf("submit for a device not known yet = %v, want it accepted", err)
	}
	before := dell.diskSum(t)
	out := deployNow(t, f, boot, dell)
	if out.Enrolled.GetAssignment() != nil || out.Result != nil {
		t.Fatalf("enrollment of a %s for an image for %s gave %v, want no assignment", latitude, elitebook, out.Enrolled)
	}
	if dell.diskSum(t) != before {
		t.Error("the disk changed")
	}
	failed := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_FAILED)
	task := failed.GetTasks()[0]
	if task.GetFailure().GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MODEL_MISMATCH ||
		!strings.Contains(task.GetFailure().GetMessage(), elitebook) || !strings.Contains(task.GetFailure().GetMessage(), latitude) {
		t.Errorf("task failure %v, want GUARD_MODEL_MISMATCH naming both models", task.GetFailure())
	}
	if _, err := submitDevice(t, f, "hp:1", deviceTargets(dell.id.GetSerial())); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), elitebook) || !strings.Contains(err.Error(), latitude) {
		t.Errorf("submit for the known %s = %v, want FailedPrecondition naming both models", latitude, err)
	}
	if g := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED); len(g) != 1 || g[0].GetFailureReason() != imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MODEL_MISMATCH {
		t.Errorf("guard.refused records %v, want the model mismatch", g)
	}
	if p := planBoot(t, boot, dell.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot after the refusal = %v, want LOCAL_BOOT", p)
	}
}

// TestDeviceOrderTakesMatchingDevicesAsTheyBoot: an order for two of a
// model takes the first two of that model to enroll, never one of another
// model, and no third.
func TestDeviceOrderTakesMatchingDevicesAsTheyBoot(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	pushFor(t, f, "hp", elitebook)
	job, err := submitDevice(t, f, "hp:1", orderTargets(elitebook, 2))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range []*laptop{newLaptop(t, 10, elitebook), newLaptop(t, 11, latitude), newLaptop(t, 12, elitebook)} {
		out := deployNow(t, f, boot, l)
		want := l.id.GetModel() == elitebook
		if got := out.Result.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE; got != want {
			t.Errorf("laptop %d (%s): written %v, want %v (%v)", i, l.id.GetModel(), got, want, out.Enrolled.GetReason())
		}
	}
	waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	if p := planBoot(t, boot, newLaptop(t, 13, elitebook).mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot of a fourth machine after the order = %v, want LOCAL_BOOT", p)
	}
}

// TestDeviceDiskChoiceRefusals: a device with two internal disks, or none,
// is refused at enrollment naming its disks, nothing written; a job that
// names the disk serial writes that one.
func TestDeviceDiskChoiceRefusals(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	two := newLaptop(t, 20, elitebook)
	second := filepath.Join(two.dir, "sda")
	if err := os.WriteFile(second, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	job, err := submitDevice(t, f, "img:1", deviceTargets(two.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	before := two.diskSum(t)
	out := deployNow(t, f, boot, two)
	if out.Enrolled.GetAssignment() != nil || !strings.Contains(out.Enrolled.GetReason(), "2 internal disks") ||
		!strings.Contains(out.Enrolled.GetReason(), "--disk SERIAL") {
		t.Errorf("enrollment with two disks = %v, want no assignment and a reason naming both disks", out.Enrolled)
	}
	if two.diskSum(t) != before {
		t.Error("a disk changed")
	}
	failed := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_FAILED)
	if r := failed.GetTasks()[0].GetFailure().GetReason(); r != imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY {
		t.Errorf("task failure %v, want GUARD_POLICY", r)
	}
	// Known now: the submit refuses, naming the disks; naming one works.
	if _, err := submitDevice(t, f, "img:1", deviceTargets(two.id.GetSerial())); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "nvme0n1") || !strings.Contains(err.Error(), "sda") {
		t.Errorf("submit for a device with two disks = %v, want FailedPrecondition naming both", err)
	}
	dev, err := f.API.GetDevice(t.Context(), &imagefarmv1.GetDeviceRequest{Device: two.mac})
	if err != nil {
		t.Fatal(err)
	}
	var serial string
	for _, d := range dev.GetDevice().GetDisks() {
		if d.GetId() == drive.VirtualID("nvme0n1") {
			serial = d.GetSerial()
		}
	}
	named := &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{
		Devices: []*imagefarmv1.DeviceTarget{{Serial: two.id.GetSerial(), DiskSerial: serial}}}}}
	if _, err := submitDevice(t, f, "img:1", named); err != nil {
		t.Fatalf("submit naming the disk = %v", err)
	}
	zeros := sha256.Sum256(make([]byte, 4<<20))
	if out := deployNow(t, f, boot, two); out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Errorf("deploy naming the disk = %v, want DONE", out.Result)
	}
	if b, _ := os.ReadFile(second); sha256.Sum256(b) != zeros {
		t.Error("the disk not named changed")
	}
}

// TestDeviceCredentialReadsOnlyItsImage: a device reads its task's image
// through the controller, and nothing else; without a task, nothing.
func TestDeviceCredentialReadsOnlyItsImage(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	pushFor(t, f, "other")
	l := newLaptop(t, 30, elitebook)
	if _, err := submitDevice(t, f, "img:1", deviceTargets(l.id.GetSerial())); err != nil {
		t.Fatal(err)
	}
	token := planBoot(t, boot, l.mac).GetBootToken()
	dev := imagefarmv1.NewDeviceServiceClient(deviceConn(t, f))
	d := deployenvDisks(t, l)
	resp, err := dev.Enroll(t.Context(), &imagefarmv1.EnrollRequest{BootToken: token, BootMac: l.mac, Identity: l.id, Disks: d})
	if err != nil || resp.GetAssignment() == nil {
		t.Fatalf("Enroll = %v, %v; want an assignment", resp, err)
	}
	cred := grpc.PerRPCCredentials(tokens.Bearer{Secret: resp.GetCredential()})
	other, err := f.Catalog.Resolve(t.Context(), catalog.Ref{Name: "other", Tag: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		want codes.Code
	}{
		{"manifests/sha256/" + strings.TrimPrefix(f.Digest, "sha256:"), codes.OK},
		{"manifests/sha256/" + strings.TrimPrefix(other, "sha256:"), codes.PermissionDenied},
		{"refs/img/versions/1", codes.PermissionDenied},
		{"../../etc/passwd", codes.PermissionDenied},
	} {
		if _, err := dev.StatObject(t.Context(), &imagefarmv1.StatObjectRequest{Key: c.key}, cred); status.Code(err) != c.want {
			t.Errorf("StatObject(%s) = %v, want %v", c.key, err, c.want)
		}
	}
	if _, err := dev.ListObjects(t.Context(), &imagefarmv1.ListObjectsRequest{Prefix: "chunks/"}, cred); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListObjects(chunks/) = %v, want PermissionDenied", err)
	}
	if _, err := dev.StatObject(t.Context(), &imagefarmv1.StatObjectRequest{Key: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("StatObject without a credential = %v, want Unauthenticated", err)
	}
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: resp.GetAssignment().GetJobId()}); err != nil {
		t.Fatal(err)
	}
	key := "manifests/sha256/" + strings.TrimPrefix(f.Digest, "sha256:")
	if _, err := dev.StatObject(t.Context(), &imagefarmv1.StatObjectRequest{Key: key}, cred); status.Code(err) != codes.PermissionDenied {
		t.Errorf("StatObject after the job was canceled = %v, want PermissionDenied", err)
	}
	// The device hears that its task was canceled on its report stream.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := dev.Report(ctx, cred)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&imagefarmv1.ReportRequest{Body: &imagefarmv1.ReportRequest_Heartbeat{Heartbeat: &imagefarmv1.Heartbeat{}}})
	m, err := stream.Recv()
	if err != nil || m.GetStopTask().GetReason() != imagefarmv1.StopReason_STOP_REASON_CANCELED {
		t.Errorf("report stream after cancel = %v, %v; want StopTask CANCELED", m, err)
	}
}

// deployenvDisks are l's disks as the deploy environment reports them.
func deployenvDisks(t *testing.T, l *laptop) []*imagefarmv1.Drive {
	t.Helper()
	found, err := drive.Discover(drive.Config{VirtualDir: l.dir, VirtualOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []*imagefarmv1.Drive
	for _, d := range found {
		out = append(out, &imagefarmv1.Drive{Id: d.ID, Serial: d.Serial, SizeBytes: uint64(d.Size), Model: d.Model,
			Transport: imagefarmv1.Transport_TRANSPORT_VIRTUAL})
	}
	return out
}
