package controller_test

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

const elitebookAlias = "HP EliteBook 840 G7"

// rolloutFarm is a farm with img:1 whose rollout loop runs often.
func rolloutFarm(t *testing.T) *farm.Farm {
	t.Helper()
	return farm.Start(t, farm.Options{PushImage: true, Controller: func(c *controller.Config) { c.RolloutTick = 50 * time.Millisecond }})
}

// tinyLaptop is a laptop whose disk is smaller than img:1: its placement
// fails, saying so, and nothing is written.
func tinyLaptop(t *testing.T, n int, model string) *laptop {
	t.Helper()
	l := newLaptop(t, n, model)
	if err := os.WriteFile(l.disk, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// knowDevices has each laptop netboot and enroll once with no work for
// it, as a depot's devices did for earlier jobs: the farm knows them.
func knowDevices(t *testing.T, f *farm.Farm, boot imagefarmv1.DeviceServiceClient, ls ...*laptop) {
	t.Helper()
	job, err := submitDevice(t, f, "img:1", orderTargets("Nobody 0", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if out := deployNow(t, f, boot, l); out.Result != nil {
			t.Fatalf("%s got a task while only enrolling: %v", l.id.GetSerial(), out.Result)
		}
	}
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
}

func addModel(t *testing.T, f *farm.Farm, m *imagefarmv1.Model) {
	t.Helper()
	if _, err := f.API.AddModel(t.Context(), &imagefarmv1.AddModelRequest{Model: m}); err != nil {
		t.Fatalf("AddModel(%s) = %v", m.GetName(), err)
	}
}

func startRollout(t *testing.T, f *farm.Farm, model string, p *imagefarmv1.RolloutPolicy) *imagefarmv1.Rollout {
	t.Helper()
	resp, err := f.API.StartRollout(t.Context(), &imagefarmv1.StartRolloutRequest{Model: model, Policy: p})
	if err != nil {
		t.Fatalf("StartRollout(%s) = %v", model, err)
	}
	return resp.GetRollouts()[0]
}

// rolloutOf is model's newest rollout.
func rolloutOf(t *testing.T, f *farm.Farm, model string) *imagefarmv1.Rollout {
	t.Helper()
	resp, err := f.API.ListRollouts(t.Context(), &imagefarmv1.ListRolloutsRequest{Model: model, All: true})
	if err != nil || len(resp.GetRollouts()) == 0 {
		t.Fatalf("ListRollouts(%s) = %v, %v", model, resp, err)
	}
	return resp.GetRollouts()[0]
}

// waitRollout waits until model's newest rollout satisfies cond.
func waitRollout(t *testing.T, f *farm.Farm, model, what string, cond func(*imagefarmv1.Rollout) bool) *imagefarmv1.Rollout {
	t.Helper()
	var r *imagefarmv1.Rollout
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("rollout of %s: %s", model, what), func() bool {
		r = rolloutOf(t, f, model)
		return cond(r)
	})
	return r
}

func inState(s imagefarmv1.RolloutState) func(*imagefarmv1.Rollout) bool {
	return func(r *imagefarmv1.Rollout) bool { return r.GetState() == s }
}

// wantCode fails unless err is a status with code whose message holds
// every one of words.
func wantCode(t *testing.T, what string, err error, code codes.Code, words ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s = %v, want %v", what, err, code)
	}
	for _, w := range words {
		if !strings.Contains(status.Convert(err).Message(), w) {
			t.Errorf("%s: message %q does not say %q", what, status.Convert(err).Message(), w)
		}
	}
}

func deviceResult(r *imagefarmv1.Rollout, serial string) *imagefarmv1.RolloutDevice {
	i := slices.IndexFunc(r.GetDevices(), func(d *imagefarmv1.RolloutDevice) bool { return d.GetSerial() == serial })
	if i < 0 {
		return nil
	}
	return r.GetDevices()[i]
}

// TestRolloutFirstArticleApproveWaves: a rollout of img:1 to model A
// writes one device first (its driver bundle, A's); until approve, no
// other A device gets the digest, not through the rollout and not through
// a job of its own; the first article passes once its device booted back;
// approve (recorded with who) starts waves of two that take the other A
// devices (one reporting an alias) as they netboot, and the rollout is
// done when every known A device has it. Model B, auto-approved, gets its
// own bundle; the device of no model is listed as unknown and never
// imaged. Bad input on the way: an unknown model, a second rollout for A,
// approve while not waiting.
func TestRolloutFirstArticleApproveWaves(t *testing.T) {
	f := rolloutFarm(t)
	boot := bootService(t, f)
	a1, a2, a3, a4 := newLaptop(t, 1, elitebook), newLaptop(t, 2, elitebook), newLaptop(t, 3, elitebook), newLaptop(t, 4, elitebookAlias)
	b1, u1 := newLaptop(t, 5, latitude), newLaptop(t, 6, "Mystery 9000")
	knowDevices(t, f, boot, a2, a3, a4, b1, u1)
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, Vendor: "HP", Aliases: []string{elitebookAlias}, ImageRef: "img:1", DriverBundleRef: "drv-a:1"})
	addModel(t, f, &imagefarmv1.Model{Name: latitude, Vendor: "Dell", ImageRef: "img:1", DriverBundleRef: "drv-b:1"})

	models, err := f.API.ListModels(t.Context(), &imagefarmv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if u := models.GetUnknown(); len(u) != 1 || u[0].GetModel() != "Mystery 9000" || !slices.Equal(u[0].GetSerials(), []string{u1.id.GetSerial()}) {
		t.Errorf("ListModels unknown = %v, want Mystery 9000 with %s", u, u1.id.GetSerial())
	}
	unknown, err := f.API.ListDevices(t.Context(), &imagefarmv1.ListDevicesRequest{UnknownModel: true})
	if err != nil || len(unknown.GetDevices()) != 1 || unknown.GetDevices()[0].GetSerial() != u1.id.GetSerial() {
		t.Errorf("ListDevices(unknown model) = %v, %v, want %s only", unknown.GetDevices(), err, u1.id.GetSerial())
	}

	_, err = f.API.StartRollout(t.Context(), &imagefarmv1.StartRolloutRequest{Model: "Mystery 9000"})
	wantCode(t, "StartRollout(unknown model)", err, codes.NotFound, "Mystery 9000", "model add")
	r := startRollout(t, f, elitebookAlias, &imagefarmv1.RolloutPolicy{WaveSize: 2})
	if r.GetModel() != elitebook || r.GetState() != imagefarmv1.RolloutState_ROLLOUT_STATE_FIRST_ARTICLE || r.GetManifestDigest() != f.Digest {
		t.Fatalf("StartRollout = %v, want %s in its first article of %s", r, elitebook, f.Digest)
	}
	_, err = f.API.StartRollout(t.Context(), &imagefarmv1.StartRolloutRequest{Model: elitebook})
	wantCode(t, "a second StartRollout", err, codes.FailedPrecondition, r.GetId(), "abort")
	_, err = f.API.ApproveRollout(t.Context(), &imagefarmv1.ApproveRolloutRequest{Model: elitebook})
	wantCode(t, "ApproveRollout in the first article", err, codes.FailedPrecondition, "first-article", "awaiting-approval")
	startRollout(t, f, latitude, &imagefarmv1.RolloutPolicy{AutoApprove: true})

	// The first article: a1, unknown to the farm, netboots first.
	out := deployNow(t, f, boot, a1)
	if out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || out.Enrolled.GetAssignment().GetOptions().GetDriverBundleRef() != "drv-a:1" {
		t.Fatalf("first article %v, assignment %v: want DONE with drivers drv-a:1", out.Result, out.Enrolled.GetAssignment())
	}
	waitRollout(t, f, elitebook, "a1 verified", func(r *imagefarmv1.Rollout) bool {
		return deviceResult(r, a1.id.GetSerial()).GetResult() == imagefarmv1.RolloutResult_ROLLOUT_RESULT_VERIFIED
	})
	if p := planBoot(t, boot, a2.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Fatalf("PlanBoot(a2) during the first article = %v, want LOCAL_BOOT", p)
	}
	// a1 boots back: the first article passes and waits.
	planBoot(t, boot, a1.mac)
	r = waitRollout(t, f, elitebook, "awaiting approval", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL))
	if d := deviceResult(r, a1.id.GetSerial()); d.GetResult() != imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE || d.GetBootTime() == nil || d.GetWave() != 0 {
		t.Errorf("first-article device %v, want DONE, booted back, wave 0", d)
	}
	// A job of its own for the same digest is refused on a2 until approve.
	own, err := submitDevice(t, f, "img:1", orderTargets(elitebook, 1))
	if err != nil {
		t.Fatal(err)
	}
	if out := deployNow(t, f, boot, a2); out.Result != nil || !strings.Contains(out.Enrolled.GetReason(), "first article") {
		t.Fatalf("a2 under a job of its own before approve: %v, reason %q; want no task, refused for the first article", out.Result, out.Enrolled.GetReason())
	}
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: own.GetId()}); err != nil {
		t.Fatal(err)
	}

	// Model B: its own drivers, approved by its policy, done.
	out = deployNow(t, f, boot, b1)
	if got := out.Enrolled.GetAssignment().GetOptions().GetDriverBundleRef(); got != "drv-b:1" || out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("b1: %v with drivers %q, want DONE with drv-b:1", out.Result, got)
	}
	planBoot(t, boot, b1.mac)
	rb := waitRollout(t, f, latitude, "done", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_DONE))
	if rb.GetApprovedBy() != "auto" {
		t.Errorf("model B approved by %q, want auto", rb.GetApprovedBy())
	}

	if _, err := f.API.ApproveRollout(t.Context(), &imagefarmv1.ApproveRolloutRequest{Model: elitebook, Reason: "sample checked"}); err != nil {
		t.Fatal(err)
	}
	r = waitRollout(t, f, elitebook, "wave 1 of 2", func(r *imagefarmv1.Rollout) bool { return r.GetWave() == 1 && r.GetWaveCount() == 2 })
	if r.GetApprovedBy() != "user:admin" || r.GetApproveTime() == nil {
		t.Errorf("approved by %q at %v, want user:admin", r.GetApprovedBy(), r.GetApproveTime())
	}
	for _, l := range []*laptop{a2, a4} {
		if out := deployNow(t, f, boot, l); out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE ||
			out.Enrolled.GetAssignment().GetOptions().GetDriverBundleRef() != "drv-a:1" {
			t.Fatalf("%s in wave 1: %v, want DONE with drv-a:1", l.id.GetSerial(), out.Result)
		}
	}
	waitRollout(t, f, elitebook, "wave 2 of 1", func(r *imagefarmv1.Rollout) bool { return r.GetWave() == 2 && r.GetWaveCount() == 1 })
	if p := planBoot(t, boot, u1.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot(device of no model) = %v, want LOCAL_BOOT", p)
	}
	deployNow(t, f, boot, a3)
	r = waitRollout(t, f, elitebook, "done", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_DONE))
	for _, l := range []*laptop{a1, a2, a3, a4} {
		if d := deviceResult(r, l.id.GetSerial()); d.GetResult() != imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE || d.GetTaskId() == "" {
			t.Errorf("%s in the rollout: %v, want DONE with its task", l.id.GetSerial(), d)
		}
	}
	if d := deviceResult(r, u1.id.GetSerial()); d != nil {
		t.Errorf("the device of no model is in the rollout: %v", d)
	}
	if d := deviceResult(rolloutOf(t, f, latitude), a1.id.GetSerial()); d != nil {
		t.Errorf("an A device is in B's rollout: %v", d)
	}
	var approved bool
	for _, rec := range records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_ROLLOUT) {
		approved = approved || rec.GetRolloutId() == r.GetId() && rec.GetActor() == "user:admin" && strings.Contains(rec.GetMessage(), "approved: sample checked")
	}
	if !approved {
		t.Error("no rollout record of the approval by user:admin")
	}
}

// TestRolloutFailingFirstArticleBlocksModel: the first article's device
// fails (its disk is too small: refused, nothing written); the rollout is
// blocked naming it and why, no other device of the model is taken, and
// abort ends it and its job, after which a new rollout may start.
func TestRolloutFailingFirstArticleBlocksModel(t *testing.T) {
	f := rolloutFarm(t)
	boot := bootService(t, f)
	bad, good := tinyLaptop(t, 1, elitebook), newLaptop(t, 2, elitebook)
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, ImageRef: "img:1"})
	r := startRollout(t, f, elitebook, nil)
	deployNow(t, f, boot, bad)
	r = waitRollout(t, f, elitebook, "blocked", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_BLOCKED))
	if !strings.Contains(r.GetReason(), bad.id.GetSerial()) || !strings.Contains(r.GetReason(), "smaller than the image") {
		t.Errorf("blocked for %q, want the device and its failure named", r.GetReason())
	}
	if p := planBoot(t, boot, good.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot(another device of the model) while blocked = %v, want LOCAL_BOOT", p)
	}
	waitJob(t, f, r.GetJobId(), imagefarmv1.JobState_JOB_STATE_CANCELED)
	_, err := f.API.ResumeRollout(t.Context(), &imagefarmv1.ResumeRolloutRequest{Model: elitebook})
	wantCode(t, "ResumeRollout while blocked", err, codes.FailedPrecondition, "blocked", "paused")
	ab, err := f.API.AbortRollout(t.Context(), &imagefarmv1.AbortRolloutRequest{Model: elitebook, Reason: "bad batch"})
	if err != nil || ab.GetRollout().GetState() != imagefarmv1.RolloutState_ROLLOUT_STATE_ABORTED || ab.GetRollout().GetFinishTime() == nil {
		t.Fatalf("AbortRollout = %v, %v, want ABORTED", ab, err)
	}
	_, err = f.API.AbortRollout(t.Context(), &imagefarmv1.AbortRolloutRequest{Model: elitebook})
	wantCode(t, "a second AbortRollout", err, codes.FailedPrecondition, "no open rollout")
	if again := startRollout(t, f, elitebook, nil); again.GetId() == r.GetId() {
		t.Error("a new rollout after abort has the aborted one's id")
	}
}

// TestRolloutWaveOverThresholdPauses: a wave of 4 with one failure (25%,
// over the default 10%) pauses the rollout by itself listing the failure;
// while paused no device is taken; resume starts the next wave.
func TestRolloutWaveOverThresholdPauses(t *testing.T) {
	f := rolloutFarm(t)
	boot := bootService(t, f)
	first, bad := newLaptop(t, 1, elitebook), tinyLaptop(t, 2, elitebook)
	rest := []*laptop{newLaptop(t, 3, elitebook), newLaptop(t, 4, elitebook), newLaptop(t, 5, elitebook)}
	knowDevices(t, f, boot, append([]*laptop{bad}, rest...)...)
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, ImageRef: "img:1"})
	startRollout(t, f, elitebook, &imagefarmv1.RolloutPolicy{WaveSize: 4, AutoApprove: true})
	deployNow(t, f, boot, first)
	planBoot(t, boot, first.mac)
	waitRollout(t, f, elitebook, "wave 1", func(r *imagefarmv1.Rollout) bool { return r.GetWave() == 1 })
	deployNow(t, f, boot, bad)
	r := waitRollout(t, f, elitebook, "paused", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_PAUSED))
	if !strings.Contains(r.GetReason(), "1 of 4 devices failed") || !strings.Contains(r.GetReason(), bad.id.GetSerial()) {
		t.Errorf("paused for %q, want 1 of 4 failed naming %s", r.GetReason(), bad.id.GetSerial())
	}
	if p := planBoot(t, boot, rest[0].mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot while paused = %v, want LOCAL_BOOT", p)
	}
	if _, err := f.API.ResumeRollout(t.Context(), &imagefarmv1.ResumeRolloutRequest{Model: elitebook}); err != nil {
		t.Fatal(err)
	}
	r = waitRollout(t, f, elitebook, "wave 2", func(r *imagefarmv1.Rollout) bool { return r.GetWave() == 2 })
	if r.GetWaveCount() != 3 {
		t.Errorf("wave 2 takes %d devices, want the 3 left", r.GetWaveCount())
	}
	if out := deployNow(t, f, boot, rest[0]); out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Errorf("after resume: %v, want DONE", out.Result)
	}
}

// TestRolloutSurvivesControllerRestart: a controller stopped between the
// first article's write and its device's boot back; the next controller
// finds the rollout where it was, passes the first article when the
// device boots back, and takes the approval.
func TestRolloutSurvivesControllerRestart(t *testing.T) {
	f := farm.Start(t, farm.Options{PushImage: true, NoController: true})
	tick := func(c *controller.Config) { c.RolloutTick = 50 * time.Millisecond }
	c1 := f.StartController(t, tick)
	f.Addr = c1.Addr
	f.AdminToken = f.Token(t, "admin", imagefarmv1.Role_ROLE_ADMIN)
	f.API = imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(f.AdminToken)))
	op := createToken(t, f, "netboot", imagefarmv1.Role_ROLE_OPERATOR)
	boot := imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(op)))
	a1, a2 := newLaptop(t, 1, elitebook), newLaptop(t, 2, elitebook)
	knowDevices(t, f, boot, a2)
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, ImageRef: "img:1"})
	r := startRollout(t, f, elitebook, nil)
	deployNow(t, f, boot, a1)
	waitRollout(t, f, elitebook, "a1 verified", func(r *imagefarmv1.Rollout) bool {
		return deviceResult(r, a1.id.GetSerial()).GetResult() == imagefarmv1.RolloutResult_ROLLOUT_RESULT_VERIFIED
	})
	c1.Stop()

	f.Addr = f.StartController(t, tick).Addr
	f.API = imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(f.AdminToken)))
	boot = imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(op)))
	planBoot(t, boot, a1.mac)
	after := waitRollout(t, f, elitebook, "awaiting approval", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL))
	if after.GetId() != r.GetId() || deviceResult(after, a1.id.GetSerial()).GetTaskId() == "" {
		t.Fatalf("after the restart: %v, want rollout %s with a1's task", after, r.GetId())
	}
	if _, err := f.API.ApproveRollout(t.Context(), &imagefarmv1.ApproveRolloutRequest{Model: elitebook}); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, f, elitebook, "wave 1", func(r *imagefarmv1.Rollout) bool { return r.GetWave() == 1 })
	if out := deployNow(t, f, boot, a2); out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Errorf("a2 in wave 1 after the restart: %v, want DONE", out.Result)
	}
}

// TestModelBadInput: what AddModel and UpdateModel refuse, each naming
// what was wrong; a refused change changes nothing.
func TestModelBadInput(t *testing.T) {
	f := farm.Start(t, farm.Options{PushImage: true})
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, Aliases: []string{elitebookAlias}})
	for _, tc := range []struct {
		name  string
		model *imagefarmv1.Model
		code  codes.Code
		words []string
	}{
		{"no name", &imagefarmv1.Model{}, codes.InvalidArgument, []string{"no name"}},
		{"control character", &imagefarmv1.Model{Name: "Evil\x1b[2J"}, codes.InvalidArgument, []string{"control"}},
		{"alias twice", &imagefarmv1.Model{Name: latitude, Aliases: []string{"L", "L"}}, codes.InvalidArgument, []string{"named twice"}},
		{"bad ref", &imagefarmv1.Model{Name: latitude, ImageRef: "no tag"}, codes.InvalidArgument, []string{"image ref"}},
		{"alias is another's alias", &imagefarmv1.Model{Name: latitude, Aliases: []string{elitebookAlias}}, codes.AlreadyExists,
			[]string{latitude, elitebook, elitebookAlias, "alias"}},
		{"name is another's alias", &imagefarmv1.Model{Name: elitebookAlias}, codes.AlreadyExists, []string{elitebook, "alias"}},
		{"name taken", &imagefarmv1.Model{Name: elitebook}, codes.AlreadyExists, []string{elitebook}},
	} {
		_, err := f.API.AddModel(t.Context(), &imagefarmv1.AddModelRequest{Model: tc.model})
		wantCode(t, "AddModel("+tc.name+")", err, tc.code, tc.words...)
	}
	addModel(t, f, &imagefarmv1.Model{Name: latitude})
	_, err := f.API.UpdateModel(t.Context(), &imagefarmv1.UpdateModelRequest{Name: latitude,
		Model: &imagefarmv1.Model{Aliases: []string{elitebookAlias}}, Fields: []string{"aliases"}})
	wantCode(t, "UpdateModel(colliding alias)", err, codes.AlreadyExists, elitebook, latitude)
	_, err = f.API.UpdateModel(t.Context(), &imagefarmv1.UpdateModelRequest{Name: latitude, Fields: []string{"name"}})
	wantCode(t, "UpdateModel(field name)", err, codes.InvalidArgument, "image_ref")
	_, err = f.API.UpdateModel(t.Context(), &imagefarmv1.UpdateModelRequest{Name: "Nobody", Fields: []string{"vendor"}})
	wantCode(t, "UpdateModel(unknown)", err, codes.NotFound, "Nobody")
	got, err := f.API.GetModel(t.Context(), &imagefarmv1.GetModelRequest{Name: latitude})
	if err != nil || len(got.GetModel().GetAliases()) != 0 {
		t.Errorf("GetModel after refusals = %v, %v, want no aliases", got, err)
	}
	up, err := f.API.UpdateModel(t.Context(), &imagefarmv1.UpdateModelRequest{Name: latitude,
		Model: &imagefarmv1.Model{ImageRef: "img:stable", DriverBundleRef: "drv:1"}, Fields: []string{"image_ref", "driver_bundle_ref"}})
	if err != nil || up.GetModel().GetImageRef() != "img:stable" || up.GetModel().GetDriverBundleRef() != "drv:1" {
		t.Errorf("UpdateModel = %v, %v", up, err)
	}
	_, err = f.API.StartRollout(t.Context(), &imagefarmv1.StartRolloutRequest{Model: latitude, Policy: &imagefarmv1.RolloutPolicy{WaveSize: 2, WavePercent: 10}})
	wantCode(t, "StartRollout(size and percent)", err, codes.InvalidArgument, "not both")
	_, err = f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_DeviceOrder{
		DeviceOrder: &imagefarmv1.DeviceOrder{Model: latitude, Count: 1, RolloutId: "r1"}}}})
	wantCode(t, "SubmitJob(order with a rollout id)", err, codes.InvalidArgument, "rollout start")
}

// TestChannelMoveStartsNewFirstArticle: a model follows img:stable; once
// its rollout is done, moving the channel to another digest starts a new
// first article of that digest for the model, and a device already on the
// old digest gets the new one only as the new rollout's sample.
func TestChannelMoveStartsNewFirstArticle(t *testing.T) {
	f := rolloutFarm(t)
	boot := bootService(t, f)
	if _, err := f.API.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: "img:1", Channel: "stable"}); err != nil {
		t.Fatal(err)
	}
	a1 := newLaptop(t, 1, elitebook)
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, ImageRef: "img:stable"})
	first := startRollout(t, f, elitebook, &imagefarmv1.RolloutPolicy{AutoApprove: true})
	deployNow(t, f, boot, a1)
	planBoot(t, boot, a1.mac)
	waitRollout(t, f, elitebook, "done", inState(imagefarmv1.RolloutState_ROLLOUT_STATE_DONE))

	img2 := bytes.Repeat([]byte("img2"), 100000)
	res, err := f.Catalog.Push(t.Context(), bytes.NewReader(img2), int64(len(img2)), catalog.PushOptions{Name: "img", Version: "2", Kind: catalog.KindDisk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.API.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: "img:2", Channel: "stable"}); err != nil {
		t.Fatal(err)
	}
	next := waitRollout(t, f, elitebook, "a new first article", func(r *imagefarmv1.Rollout) bool { return r.GetId() != first.GetId() })
	if next.GetManifestDigest() != res.Digest || next.GetState() != imagefarmv1.RolloutState_ROLLOUT_STATE_FIRST_ARTICLE || next.GetStartedBy() != "controller" {
		t.Fatalf("after the channel moved: %v, want a first article of %s started by the controller", next, res.Digest)
	}
	if out := deployNow(t, f, boot, a1); out.Enrolled.GetAssignment().GetManifestDigest() != res.Digest {
		t.Errorf("a1 after the move: assignment %v, want the new digest as the sample", out.Enrolled.GetAssignment())
	}
}

// TestRolloutMaxInFlightPerPool: with at most one device in flight per
// pool, a second device of a pool waits (it boots its local disk) while
// the first is written, and a device of another pool is taken meanwhile.
func TestRolloutMaxInFlightPerPool(t *testing.T) {
	f := rolloutFarm(t)
	boot := bootService(t, f)
	a1, a2, b1 := newLaptop(t, 1, elitebook), newLaptop(t, 2, elitebook), newLaptop(t, 3, elitebook)
	knowDevices(t, f, boot, a1, a2, b1)
	for l, pool := range map[*laptop]string{a1: "depot-a", a2: "depot-a", b1: "depot-b"} {
		if _, err := f.API.SetDeviceFacts(t.Context(), &imagefarmv1.SetDeviceFactsRequest{Device: l.id.GetSerial(), Pool: &pool}); err != nil {
			t.Fatal(err)
		}
	}
	addModel(t, f, &imagefarmv1.Model{Name: elitebook, ImageRef: "img:1"})
	startRollout(t, f, elitebook, &imagefarmv1.RolloutPolicy{SampleSize: 3, MaxInFlight: 1})
	// a1 enrolls and gets its task, and is still writing it.
	p := planBoot(t, boot, a1.mac)
	resp, err := imagefarmv1.NewDeviceServiceClient(deviceConn(t, f)).Enroll(t.Context(), &imagefarmv1.EnrollRequest{BootToken: p.GetBootToken(),
		BootMac: a1.mac, Identity: a1.id, Arch: "x86_64-efi", Disks: []*imagefarmv1.Drive{{Id: "nvme0n1", SizeBytes: 1 << 30,
			Transport: imagefarmv1.Transport_TRANSPORT_NVME}}})
	if err != nil || resp.GetAssignment() == nil {
		t.Fatalf("Enroll(a1) = %v, %v; want a task", resp, err)
	}
	if p := planBoot(t, boot, a2.mac); p.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT {
		t.Errorf("PlanBoot(a2, a1's pool, one in flight) = %v, want LOCAL_BOOT", p)
	}
	if out := deployNow(t, f, boot, b1); out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Errorf("b1 of another pool: %v, want DONE", out.Result)
	}
}
