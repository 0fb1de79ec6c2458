package controller_test

import (
	"os"
	"path/filepath"
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

// pushWIM captures a small tree with wimlib and pushes it as name:1, a
// WIM for models (universal when none).
func pushWIM(t *testing.T, f *farm.Farm, name string, models ...string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tree", "Windows"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tree", "Windows", "explorer.exe"), []byte("MZ "+name), 0o644); err != nil {
		t.Fatal(err)
	}
	wimPath := filepath.Join(dir, "install.wim")
	testenv.Run(t, "wimtools", "wimlib-imagex", "capture", filepath.Join(dir, "tree"), wimPath, "Windows")
	data, err := os.ReadFile(wimPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Catalog.Push(t.Context(), strings.NewReader(string(data)), int64(len(data)),
		catalog.PushOptions{Name: name, Version: "1", Kind: catalog.KindWIM, Models: models}); err != nil {
		t.Fatal(err)
	}
}

// knownDevice makes l known to the farm: it netboots while a device order
// for another model has room, enrolls, gets no task. It returns the
// device credential.
func knownDevice(t *testing.T, f *farm.Farm, boot imagefarmv1.DeviceServiceClient, l *laptop) string {
	t.Helper()
	p := planBoot(t, boot, l.mac)
	resp, err := imagefarmv1.NewDeviceServiceClient(deviceConn(t, f)).Enroll(t.Context(),
		&imagefarmv1.EnrollRequest{BootToken: p.GetBootToken(), BootMac: l.mac, Identity: l.id, Arch: "x86_64-efi"})
	if err != nil || resp.GetAssignment() != nil {
		t.Fatalf("Enroll(%s) = %v, %v; want enrolled without a task", l.id.GetSerial(), resp, err)
	}
	return resp.GetCredential()
}

func setPolicy(t *testing.T, api imagefarmv1.ImageFarmServiceClient, scope imagefarmv1.PolicyScope, name string, st imagefarmv1.ResetPermission) error {
	t.Helper()
	_, err := api.SetResetPolicy(t.Context(), &imagefarmv1.SetResetPolicyRequest{Scope: scope, Name: name, State: st})
	return err
}

func submitReset(t *testing.T, api imagefarmv1.ImageFarmServiceClient, ref string, serials ...string) (*imagefarmv1.Job, error) {
	t.Helper()
	resp, err := api.SubmitReset(t.Context(), &imagefarmv1.SubmitResetRequest{Serials: serials, ImageRef: ref,
		Spec: &imagefarmv1.ResetSpec{WimIndex: 1}})
	return resp.GetJob(), err
}

const (
	allow  = imagefarmv1.ResetPermission_RESET_PERMISSION_ALLOW
	deny   = imagefarmv1.ResetPermission_RESET_PERMISSION_DENY
	byDev  = imagefarmv1.PolicyScope_POLICY_SCOPE_DEVICE
	byMod  = imagefarmv1.PolicyScope_POLICY_SCOPE_MODEL
	byPool = imagefarmv1.PolicyScope_POLICY_SCOPE_POOL
)

// TestResetPolicyAndSubmitRefusals: reset is off by default, and a reset
// submitted then is refused naming the policy and how to turn it on,
// nothing stored, the refusal audited; only an admin sets a policy; the
// most specific record decides (device over model over pool); a
// hybrid-joined device and a WIM for another model are refused; a plain
// SubmitJob cannot smuggle a reset past the policy; an allowed reset
// becomes a device job whose device boots the deploy environment.
func TestResetPolicyAndSubmitRefusals(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	pushWIM(t, f, "win11")
	pushWIM(t, f, "win11-latitude", latitude)
	order, err := submitDevice(t, f, "img:1", orderTargets("Nobody's Model", 5)) // unknown machines netboot and enroll
	if err != nil {
		t.Fatal(err)
	}
	hp, dell := newLaptop(t, 31, elitebook), newLaptop(t, 32, latitude)
	knownDevice(t, f, boot, hp)
	knownDevice(t, f, boot, dell)
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: order.GetId()}); err != nil {
		t.Fatal(err)
	}
	operator := imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""),
		f.Bearer(createToken(t, f, "tech", imagefarmv1.Role_ROLE_OPERATOR))))
	jobsBefore := countJobs(t, f)

	// Off by default: refused, naming the policy and the command.
	_, err = submitReset(t, operator, "win11:1", hp.id.GetSerial())
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "reset is off for device "+hp.id.GetSerial()) ||
		!strings.Contains(err.Error(), "imagefarm device policy set --reset allow") {
		t.Fatalf("SubmitReset with no policy = %v, want FailedPrecondition naming the policy and how to turn it on", err)
	}
	if n := countJobs(t, f); n != jobsBefore {
		t.Errorf("a refused reset stored a job: %d jobs, want %d", n, jobsBefore)
	}
	if r := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_RESET_REFUSED); len(r) != 1 || r[0].GetActor() != "user:tech" ||
		!strings.Contains(r[0].GetMessage(), "reset is off") {
		t.Errorf("reset.refused records %v, want one by user:tech saying reset is off", r)
	}
	dev := getDevice(t, f, hp.id.GetSerial())
	if p := dev.GetResetPolicy(); p.GetAllowed() || p.GetDecidedBy() != nil || !strings.Contains(p.GetReason(), "off by default") {
		t.Errorf("GetDevice reset policy = %v, want off by default", p)
	}

	// Only an admin sets a policy.
	if err := setPolicy(t, operator, byMod, elitebook, allow); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SetResetPolicy as an operator = %v, want PermissionDenied", err)
	}
	// Most specific wins: the pool allows, the model denies, the device allows.
	if _, err := f.API.SetDeviceFacts(t.Context(), &imagefarmv1.SetDeviceFactsRequest{Device: hp.id.GetSerial(), Pool: ptr("depot-a")}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		scope   imagefarmv1.PolicyScope
		name    string
		st      imagefarmv1.ResetPermission
		allowed bool
		by      string
	}{
		{byPool, "depot-a", allow, true, `pool "depot-a"`},
		{byMod, elitebook, deny, false, `model "` + elitebook + `"`},
		{byDev, hp.id.GetSerial(), allow, true, "device's own"},
	} {
		if err := setPolicy(t, f.API, step.scope, step.name, step.st); err != nil {
			t.Fatalf("SetResetPolicy(%v %s) = %v", step.scope, step.name, err)
		}
		p := getDevice(t, f, hp.id.GetSerial()).GetResetPolicy()
		if p.GetAllowed() != step.allowed || !strings.Contains(p.GetReason(), step.by) {
			t.Errorf("after %v %s %v: policy %v, want allowed %v by %s", step.scope, step.name, step.st, p, step.allowed, step.by)
		}
	}
	if r := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_RESET_POLICY); len(r) != 3 ||
		r[2].GetDeviceId() != dev.GetDevice().GetId() || !strings.Contains(r[2].GetMessage(), "reset allowed for device") {
		t.Errorf("reset.policy records %v, want 3, the last for the device", r)
	}

	// A WIM for another model: the exact-model rule refuses it.
	if _, err := submitReset(t, operator, "win11-latitude:1", hp.id.GetSerial()); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "exact-model rule") {
		t.Errorf("SubmitReset with a WIM for another model = %v, want the exact-model rule", err)
	}
	// A disk image is no WIM; index 0 and a keep path leaving the volume are bad input.
	for _, tc := range []struct {
		req  *imagefarmv1.SubmitResetRequest
		code codes.Code
		msg  string
	}{
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, ImageRef: "img:1", Spec: &imagefarmv1.ResetSpec{WimIndex: 1}},
			codes.InvalidArgument, "is a disk, not a wim"},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, ImageRef: "win11:1"}, codes.InvalidArgument, "WIM index 0"},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, ImageRef: "win11:1", Spec: &imagefarmv1.ResetSpec{WimIndex: 2}},
			codes.InvalidArgument, "index 2 of a WIM with 1 images"},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, ImageRef: "win11:1",
			Spec: &imagefarmv1.ResetSpec{WimIndex: 1, KeepPaths: []string{`Users\..\..\etc`}}}, codes.InvalidArgument, "leave the volume"},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, ImageRef: "win11:1",
			Spec: &imagefarmv1.ResetSpec{WimIndex: 1, KeepPaths: []string{"/etc/shadow"}}}, codes.InvalidArgument, "absolute"},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, ImageRef: "win11:1",
			Spec: &imagefarmv1.ResetSpec{WimIndex: 1, Refresh: true, KeepPaths: []string{"a"}}}, codes.InvalidArgument, "a refresh keeps nothing"},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{"NOSUCH"}, ImageRef: "win11:1", Spec: &imagefarmv1.ResetSpec{WimIndex: 1}},
			codes.NotFound, `no known device has the serial "NOSUCH"`},
		{&imagefarmv1.SubmitResetRequest{Serials: []string{hp.id.GetSerial()}, Model: elitebook, ImageRef: "win11:1",
			Spec: &imagefarmv1.ResetSpec{WimIndex: 1}}, codes.InvalidArgument, "one way"},
	} {
		if _, err := operator.SubmitReset(t.Context(), tc.req); status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("SubmitReset(%v) = %v, want %v saying %q", tc.req, err, tc.code, tc.msg)
		}
	}
	// A plain SubmitJob cannot carry a reset past the policy checks.
	_, err = operator.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: deviceTargets(dell.id.GetSerial()),
		Options: &imagefarmv1.JobOptions{ResetSpec: &imagefarmv1.ResetSpec{WimIndex: 1}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "SubmitReset") {
		t.Errorf("SubmitJob with a reset spec = %v, want InvalidArgument pointing at SubmitReset", err)
	}
	if n := countJobs(t, f); n != jobsBefore {
		t.Errorf("refused resets stored jobs: %d jobs, want %d", n, jobsBefore)
	}

	// Hybrid-joined: refused even though the policy allows it.
	if _, err := f.API.SetDeviceFacts(t.Context(), &imagefarmv1.SetDeviceFactsRequest{Device: hp.id.GetSerial(), HybridJoined: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := submitReset(t, operator, "win11:1", hp.id.GetSerial()); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "hybrid-joined devices need a full wipe") {
		t.Errorf("SubmitReset of a hybrid-joined device = %v, want refused: hybrid-joined devices need a full wipe", err)
	}
	if _, err := f.API.SetDeviceFacts(t.Context(), &imagefarmv1.SetDeviceFactsRequest{Device: hp.id.GetSerial(), HybridJoined: ptr(false)}); err != nil {
		t.Fatal(err)
	}

	// Allowed: a device job carrying the reset, pinned to the WIM's
	// digest; the device's next network boot is the deploy environment.
	if p := planBoot(t, boot, hp.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Fatalf("PlanBoot before the reset = %v, want LOCAL_BOOT", p)
	}
	job, err := submitReset(t, operator, "win11:1", hp.id.GetSerial())
	if err != nil {
		t.Fatalf("SubmitReset allowed by the device's policy = %v", err)
	}
	if job.GetOptions().GetResetSpec().GetWimIndex() != 1 || !strings.HasPrefix(job.GetManifestDigest(), "sha256:") {
		t.Errorf("reset job %v, want the reset spec and the WIM's digest", job)
	}
	// The policy is checked again when the device enrolls: denied since
	// the submit, the task is refused and nothing is written.
	before := hp.diskSum(t)
	if err := setPolicy(t, f.API, byDev, hp.id.GetSerial(), deny); err != nil {
		t.Fatal(err)
	}
	if out := deployNow(t, f, boot, hp); out.Result != nil || !strings.Contains(out.Enrolled.GetReason(), "reset is off") {
		t.Errorf("enrolled with the policy denied since the submit: %v, want no task, refused naming the policy", out.Enrolled)
	}
	done := waitJob(t, f, job.GetId(), imagefarmv1.JobState_JOB_STATE_FAILED)
	if r := done.GetTasks()[0].GetFailure().GetReason(); r != imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY {
		t.Errorf("refused reset task's failure %v, want GUARD_POLICY", r)
	}
	// The deploy environment's engine refuses a disk with no GPT (this
	// laptop's disk is plain bytes) before writing anything, and the WIM
	// is never written over the disk as if it were a disk image.
	if err := setPolicy(t, f.API, byDev, hp.id.GetSerial(), allow); err != nil {
		t.Fatal(err)
	}
	if _, err := submitReset(t, operator, "win11:1", hp.id.GetSerial()); err != nil {
		t.Fatal(err)
	}
	out := deployNow(t, f, boot, hp)
	if out.Result.GetFailure().GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY ||
		!strings.Contains(out.Result.GetFailure().GetMessage(), "no GUID partition table") {
		t.Errorf("reset of a disk without a GPT: %v, want refused naming the missing partition table", out.Result)
	}
	if hp.diskSum(t) != before {
		t.Error("the disk changed: a refused reset wrote it")
	}
}

// TestResetLocalTrigger: the console of a device in the deploy environment
// offers a reset only when its policy allows one; a wrong token, or a
// viewer's, typed there is refused and audited and submits nothing; an
// operator's submits a reset of that device in the operator's name.
func TestResetLocalTrigger(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	pushWIM(t, f, "win11")
	if _, err := submitDevice(t, f, "img:1", orderTargets("Nobody's Model", 5)); err != nil {
		t.Fatal(err)
	}
	l := newLaptop(t, 41, elitebook)
	cred := knownDevice(t, f, boot, l)
	console := imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(cred)))
	ask := func(token string) (*imagefarmv1.CheckResetTriggerResponse, error) {
		return console.CheckResetTrigger(t.Context(), &imagefarmv1.CheckResetTriggerRequest{Token: token, ImageRef: "win11:1", WimIndex: 1})
	}
	if resp, err := ask(""); err != nil || resp.GetAllowed() || !strings.Contains(resp.GetReason(), "reset is off") {
		t.Errorf("CheckResetTrigger with the policy off = %v, %v; want not allowed, saying reset is off", resp, err)
	}
	op := createToken(t, f, "tech", imagefarmv1.Role_ROLE_OPERATOR)
	if _, err := ask(op); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("CheckResetTrigger with an operator token and the policy off = %v, want FailedPrecondition", err)
	}
	if err := setPolicy(t, f.API, byMod, elitebook, allow); err != nil {
		t.Fatal(err)
	}
	if resp, err := ask(""); err != nil || !resp.GetAllowed() || resp.GetJobId() != "" {
		t.Errorf("CheckResetTrigger with the policy on = %v, %v; want allowed, no job", resp, err)
	}
	jobs := countJobs(t, f)
	viewer := createToken(t, f, "watcher", imagefarmv1.Role_ROLE_VIEWER)
	for _, bad := range []string{"ift_wrong", viewer, strings.Repeat("x", 1000)} {
		if _, err := ask(bad); status.Code(err) != codes.PermissionDenied {
			t.Errorf("CheckResetTrigger(%.12s...) = %v, want PermissionDenied", bad, err)
		}
	}
	if n := countJobs(t, f); n != jobs {
		t.Errorf("refused console resets stored jobs: %d, want %d", n, jobs)
	}
	refused := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_RESET_REFUSED)
	if len(refused) != 4 || !strings.HasPrefix(refused[1].GetActor(), "device:") || !strings.Contains(refused[1].GetMessage(), "unknown or revoked") ||
		!strings.Contains(refused[2].GetMessage(), "a viewer's") {
		t.Errorf("reset.refused records %v, want 4 (policy off, wrong token, viewer's, too long) by the device", refused)
	}
	resp, err := ask(op)
	if err != nil || !resp.GetAllowed() || resp.GetJobId() == "" {
		t.Fatalf("CheckResetTrigger with an operator token = %v, %v; want a reset job", resp, err)
	}
	job, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: resp.GetJobId()})
	if err != nil || job.GetJob().GetOptions().GetResetSpec() == nil || job.GetJob().GetTargets().GetDevices().GetDevices()[0].GetSerial() != l.id.GetSerial() {
		t.Errorf("the console's job = %v, %v; want a reset of %s", job, err, l.id.GetSerial())
	}
	if p := planBoot(t, boot, l.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		t.Errorf("PlanBoot after the console's reset = %v, want DEPLOY", p)
	}
}

func ptr[T any](v T) *T { return &v }

func getDevice(t *testing.T, f *farm.Farm, what string) *imagefarmv1.GetDeviceResponse {
	t.Helper()
	resp, err := f.API.GetDevice(t.Context(), &imagefarmv1.GetDeviceRequest{Device: what})
	if err != nil {
		t.Fatalf("GetDevice(%s) = %v", what, err)
	}
	return resp
}

func countJobs(t *testing.T, f *farm.Farm) int {
	t.Helper()
	resp, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetJobs())
}
