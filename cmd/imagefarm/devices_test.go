package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/deployenv/device"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestDevicesLsAndShow: a job submitted with --device writes a laptop that
// netboots; devices ls and show (and --json) then show its identity and
// the image written, and show refuses a device nobody knows, saying how
// devices become known.
func TestDevicesLsAndShow(t *testing.T) {
	f := farm.Start(t, farm.Options{Plaintext: true, PushImage: true})
	viewer := f.Token(t, "viewer", imagefarmv1.Role_ROLE_VIEWER)
	if out, errOut, err := as(t, f, f.AdminToken, "job", "submit", "img:1", "--device", "5CG0042XYZ"); err != nil ||
		!strings.Contains(out, "to 1 netbooted device") {
		t.Fatalf("job submit --device = %v (%s%s)", err, out, errOut)
	}
	conn, err := grpc.NewClient(f.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokens.Bearer{Secret: f.AdminToken, Plaintext: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const mac = "52:54:00:00:00:42"
	plan, err := imagefarmv1.NewDeviceServiceClient(conn).PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: mac})
	if err != nil || plan.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		t.Fatalf("PlanBoot = %v, %v; want DEPLOY", plan, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nvme0n1"), make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dconn, err := grpc.NewClient(f.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer dconn.Close()
	out, err := device.Run(t.Context(), device.Config{Conn: dconn, Plaintext: true, BootToken: plan.GetBootToken(), BootMAC: mac,
		Identity: &imagefarmv1.DeviceIdentity{Uuid: "4c4c4544-0000-1000-8000-000000000042", Serial: "5CG0042XYZ", Vendor: "HP", Model: "EliteBook"},
		Drives:   drive.Config{VirtualDir: dir, VirtualOnly: true}})
	if err != nil || out.Result.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("deploy = %v, %v; want DONE", out.Result, err)
	}
	ls, errOut, err := as(t, f, viewer, "devices", "ls")
	if err != nil || !strings.Contains(ls, "5CG0042XYZ") || !strings.Contains(ls, "EliteBook") || !strings.Contains(ls, "img:1") {
		t.Errorf("devices ls = %v (%s%s), want the laptop with img:1", err, ls, errOut)
	}
	show, _, err := as(t, f, viewer, "devices", "show", mac, "--json")
	var d imagefarmv1.Device
	if err != nil || protojson.Unmarshal([]byte(show), &d) != nil || d.GetLastImageRef() != "img:1" || d.GetSerial() != "5CG0042XYZ" ||
		d.GetLastJobId() == "" || !strings.HasPrefix(d.GetLastImageDigest(), "sha256:") {
		t.Errorf("devices show --json = %v (%s), want the device with img:1, its digest and job", err, show)
	}
	text, _, err := as(t, f, viewer, "devices", "show", "5CG0042XYZ")
	if err != nil || !strings.Contains(text, "virt-nvme0n1") || !strings.Contains(text, mac) {
		t.Errorf("devices show = %v (%s), want its disk and MAC", err, text)
	}
	if _, _, err := as(t, f, viewer, "devices", "show", "NOPE"); err == nil || !strings.Contains(err.Error(), "netbooted into the farm") {
		t.Errorf("devices show NOPE = %v, want it to say how devices become known", err)
	}
	checkResetCommands(t, f, viewer)
}

// checkResetCommands: device policy set, device set, device show's reset
// line and device reset's refusals, as the CLI prints them.
func checkResetCommands(t *testing.T, f *farm.Farm, viewer string) {
	t.Helper()
	if text, _, _ := as(t, f, viewer, "device", "show", "5CG0042XYZ"); !strings.Contains(text, "off by default") {
		t.Errorf("device show = %s, want reset off by default", text)
	}
	for _, tc := range []struct {
		token string
		args  []string
		err   string
	}{
		{viewer, []string{"device", "policy", "set", "--reset", "allow", "--model", "EliteBook"}, "needs the admin role"},
		{f.AdminToken, []string{"device", "policy", "set", "--reset", "maybe", "--model", "EliteBook"}, `--reset "maybe": want allow or deny`},
		{f.AdminToken, []string{"device", "policy", "set", "--reset", "allow"}, "exactly one of --model"},
		{f.AdminToken, []string{"device", "policy", "set", "--reset", "allow", "--model", "X", "--pool", "p"}, "exactly one of --model"},
		{f.AdminToken, []string{"device", "policy", "set", "--reset", "allow", "--pool", "a\x1b[2Jb"}, "pool"},
		{f.AdminToken, []string{"device", "set", "5CG0042XYZ"}, "nothing to set"},
		{f.AdminToken, []string{"device", "reset", "5CG0042XYZ"}, "--image REF"},
		{f.AdminToken, []string{"device", "refresh", "5CG0042XYZ", "--image", "img:1", "--keep", "x"}, "unknown flag: --keep"},
		{f.AdminToken, []string{"device", "reset", "5CG0042XYZ", "--image", "img:1", "--then", "explode"}, `--then "explode"`},
		{f.AdminToken, []string{"device", "reset", "5CG0042XYZ", "--image", "img:1"}, "is a disk, not a wim"},
	} {
		if out, errOut, err := as(t, f, tc.token, tc.args...); err == nil || !strings.Contains(err.Error()+errOut, tc.err) {
			t.Errorf("%s = %v (%s%s), want an error saying %q", strings.Join(tc.args, " "), err, out, errOut, tc.err)
		}
	}
	if out, errOut, err := as(t, f, f.AdminToken, "device", "set", "5CG0042XYZ", "--pool", "depot-a"); err != nil || !strings.Contains(out, "depot-a") {
		t.Errorf("device set --pool = %v (%s%s), want the device in depot-a", err, out, errOut)
	}
	if out, errOut, err := as(t, f, f.AdminToken, "device", "policy", "set", "--reset", "allow", "--pool", "depot-a"); err != nil ||
		!strings.Contains(out, "ALLOW") {
		t.Errorf("device policy set = %v (%s%s), want the record", err, out, errOut)
	}
	if text, _, _ := as(t, f, viewer, "device", "show", "5CG0042XYZ"); !strings.Contains(text, `allowed by the policy of pool "depot-a"`) {
		t.Errorf("device show = %s, want reset allowed by the pool's policy", text)
	}
	if ls, _, err := as(t, f, viewer, "device", "policy", "ls"); err != nil || !strings.Contains(ls, "depot-a") {
		t.Errorf("device policy ls = %v (%s), want the pool's record", err, ls)
	}
}
