package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/deployenv/device"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestModelAndRolloutCommands: model add, alias (a colliding one refused
// naming both models), ls with the devices of no model, show; rollout
// start, status, report --csv after a first-article device netbooted and
// was written; approve while not awaiting approval refused saying why;
// flags out of their bounds refused.
func TestModelAndRolloutCommands(t *testing.T) {
	f := farm.Start(t, farm.Options{Plaintext: true, PushImage: true})
	run := func(args ...string) (string, error) {
		t.Helper()
		out, errOut, err := as(t, f, f.AdminToken, args...)
		return out + errOut, err
	}
	if out, err := run("model", "add", "EliteBook 840", "--vendor", "HP", "--alias", "EB840", "--image", "img:1", "--drivers", "drv:1"); err != nil {
		t.Fatalf("model add = %v (%s)", err, out)
	}
	if out, err := run("model", "add", "Latitude"); err != nil {
		t.Fatalf("model add = %v (%s)", err, out)
	}
	if _, err := run("model", "alias", "Latitude", "EB840"); err == nil || !strings.Contains(err.Error(), `"EliteBook 840"`) ||
		!strings.Contains(err.Error(), `"Latitude"`) {
		t.Errorf("model alias (colliding) = %v, want both models named", err)
	}
	if out, err := run("model", "show", "EB840"); err != nil || !strings.Contains(out, "drv:1") || !strings.Contains(out, "img:1") {
		t.Errorf("model show EB840 = %v (%s), want the model by its alias", err, out)
	}
	if out, err := run("model", "show", "EB840"); err != nil || !strings.Contains(out, "reset policy: none") {
		t.Errorf("model show = %v (%s), want no reset policy", err, out)
	}
	if out, err := run("device", "policy", "set", "--reset", "allow", "--model", "EliteBook 840"); err != nil {
		t.Fatalf("device policy set = %v (%s)", err, out)
	}
	if out, err := run("model", "show", "EB840"); err != nil || !strings.Contains(out, "reset policy: ALLOW") {
		t.Errorf("model show = %v (%s), want the model's reset policy", err, out)
	}
	if out, err := run("rollout", "start", "EB840", "--sample", "0"); err == nil {
		t.Errorf("rollout start --sample 0 = %s, want refused", out)
	}
	if out, err := run("rollout", "start", "EB840"); err != nil || !strings.Contains(out, "first article on 1 device") {
		t.Fatalf("rollout start = %v (%s)", err, out)
	}
	if _, err := run("rollout", "approve", "EB840"); err == nil || !strings.Contains(err.Error(), "first-article") {
		t.Errorf("rollout approve in the first article = %v, want refused naming the state", err)
	}
	laptop(t, f, "52:54:00:00:00:51", "5CG0051XYZ", "EB840")
	if out, err := run("job", "submit", "img:1", "--model", "Nobody", "--count", "1"); err != nil { // a job that lets a machine enroll
		t.Fatalf("job submit = %v (%s)", err, out)
	}
	laptop(t, f, "52:54:00:00:00:52", "MYST0052", "Mystery 9000")
	if out, err := run("model", "ls"); err != nil || !strings.Contains(out, "unknown model") || !strings.Contains(out, "MYST0052") {
		t.Errorf("model ls = %v (%s), want the device of no model listed", err, out)
	}
	if out, err := run("devices", "ls", "--unknown-model"); err != nil || !strings.Contains(out, "MYST0052") || strings.Contains(out, "5CG0051XYZ") {
		t.Errorf("devices ls --unknown-model = %v (%s), want MYST0052 only", err, out)
	}
	if out, err := run("rollout", "status"); err != nil || !strings.Contains(out, "EliteBook 840") || !strings.Contains(out, "FIRST_ARTICLE") {
		t.Errorf("rollout status = %v (%s)", err, out)
	}
	out, errOut, err := as(t, f, f.AdminToken, "rollout", "report", "--csv")
	rows, cerr := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || cerr != nil || len(rows) != 2 || rows[1][0] != "5CG0051XYZ" || rows[1][1] != "EB840" || rows[1][2] != f.Digest || rows[1][4] == "" {
		t.Errorf("rollout report --csv = %v (%s%s), want the laptop with its model, digest and job", err, out, errOut)
	}
	if _, err := run("rollout", "report"); err == nil {
		t.Error("rollout report without --csv or --json was accepted")
	}
}

// laptop netboots a machine and runs its deploy environment.
func laptop(t *testing.T, f *farm.Farm, mac, serial, model string) {
	t.Helper()
	conn, err := grpc.NewClient(f.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokens.Bearer{Secret: f.AdminToken, Plaintext: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	plan, err := imagefarmv1.NewDeviceServiceClient(conn).PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: mac})
	if err != nil || plan.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		t.Fatalf("PlanBoot(%s) = %v, %v; want DEPLOY", mac, plan, err)
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
	_, err = device.Run(t.Context(), device.Config{Conn: dconn, Plaintext: true, BootToken: plan.GetBootToken(), BootMAC: mac,
		Identity: &imagefarmv1.DeviceIdentity{Serial: serial, Vendor: "HP", Model: model}, Drives: drive.Config{VirtualDir: dir, VirtualOnly: true}})
	if err != nil {
		t.Fatalf("deploy %s: %v", serial, err)
	}
}
