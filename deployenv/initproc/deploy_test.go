package initproc

import (
	"bytes"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestDeployWritesThePlannedDisk: /init with the boot token and the
// controller from its command line enrolls with what it found (identity,
// NICs), writes the disk its assignment names with the image, and then
// does what the job says (power off); a spent token is refused, nothing
// is written, and it reboots for a new one, or does what imagefarm.then
// says.
func TestDeployWritesThePlannedDisk(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, CatalogScanInterval: -1, PushImage: true})
	op := f.Token(t, "netboot", imagefarmv1.Role_ROLE_OPERATOR)
	boot := imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), grpc.WithPerRPCCredentials(tokens.Bearer{Secret: op})))
	const serial, mac = "5CG0042XYZ", "52:54:00:00:00:42"
	targets := &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{
		Devices: []*imagefarmv1.DeviceTarget{{Serial: serial}}}}}
	job, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: targets,
		Options: &imagefarmv1.JobOptions{AfterWrite: imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF}})
	if err != nil {
		t.Fatalf("SubmitJob --device: %v", err)
	}
	plan, err := boot.PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: mac, Arch: "bios"})
	if err != nil || plan.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		t.Fatalf("PlanBoot = %v, %v; want DEPLOY", plan, err)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "nvme0n1") // not vda: the guard checks the host's mounts, and this host boots from vda
	if err := os.WriteFile(disk, bytes.Repeat([]byte("factory!"), 512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	m := machine{drives: drive.Config{VirtualDir: dir, VirtualOnly: true}, ca: filepath.Join(f.PKI.Dir, pki.CACertFile)}
	cmdline := "console=ttyS0 BOOTIF=01-52-54-00-00-00-42 imagefarm.token=" + plan.GetBootToken() + " imagefarm.controller=" + f.Addr
	p, err := ParseParams(cmdline)
	if err != nil {
		t.Fatal(err)
	}
	rep := Report{Identity: Identity{Vendor: "HP", Product: "HP EliteBook 840 G7", Serial: serial,
		UUID: "4c4c4544-0000-1000-8000-000000000042", NICs: []NIC{{Name: "eth0", MAC: mac}}}}
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	got := deploy(t.Context(), p, rep, m, logger)
	if got.Error != "" || got.State != "TASK_STATE_DONE" || got.JobID != job.GetJob().GetId() || got.Then != ThenPowerOff ||
		got.Digest != f.Digest || got.DeviceID == "" {
		t.Fatalf("deploy = %+v, want job %s's task DONE with digest %s, then poweroff\nlog:\n%s", got, job.GetJob().GetId(), f.Digest, log.String())
	}
	b, _ := os.ReadFile(disk)
	if sha256.Sum256(b[:len(farm.Image)]) != sha256.Sum256(farm.Image) {
		t.Errorf("the disk does not start with the image")
	}
	if len(got.Warnings) != 1 || got.Warnings[0] != UnsignedWarning {
		t.Errorf("deploy without trusted keys warns %q, want %q", got.Warnings, UnsignedWarning)
	}
	if strings.Contains(log.String(), plan.GetBootToken()) {
		t.Errorf("the log shows the boot token:\n%s", log.String())
	}

	os.WriteFile(disk, bytes.Repeat([]byte("factory!"), 512<<10), 0o600)
	before, _ := os.ReadFile(disk)
	for then, want := range map[Then]Then{ThenWait: ThenReboot, ThenPowerOff: ThenPowerOff} {
		p.Then = then
		again := deploy(t.Context(), p, rep, m, logger)
		if !strings.Contains(again.Error, "reboot the device from the network for a new one") || again.Then != want || again.TaskID != "" {
			t.Errorf("deploy with a spent token, imagefarm.then=%q = %+v, want refused, then %s", then, again, want)
		}
	}
	if after, _ := os.ReadFile(disk); !bytes.Equal(before, after) {
		t.Errorf("a refused deploy wrote the disk")
	}

	p.Then, m.ca = ThenWait, filepath.Join(t.TempDir(), "ca.crt")
	if got := deploy(t.Context(), p, rep, m, logger); !strings.Contains(got.Error, "no farm CA in the deploy environment") || got.Then != ThenReboot {
		t.Errorf("deploy with no farm CA = %+v, want refused naming the CA, then reboot", got)
	}
}

// TestDeployChecksSignaturesWithTheEnvironmentsKeys: an environment built
// with trusted keys (build-env --trusted-keys, read from TrustedKeys)
// refuses an unsigned image and one signed by a key it does not trust with
// the imager's own guard message, its disk unchanged, and writes the image
// once a trusted key signed it; it gives no unsigned warning. Keys it
// cannot read stop the deploy before it enrolls.
func TestDeployChecksSignaturesWithTheEnvironmentsKeys(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, CatalogScanInterval: -1, PushImage: true})
	op := f.Token(t, "netboot", imagefarmv1.Role_ROLE_OPERATOR)
	boot := imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), grpc.WithPerRPCCredentials(tokens.Bearer{Secret: op})))
	const serial, mac = "5CG0043XYZ", "52:54:00:00:00:43"
	trusted, other := newKey(t), newKey(t)
	dir := t.TempDir()
	keys := filepath.Join(t.TempDir(), "trusted.pub")
	if err := os.WriteFile(keys, []byte(trusted.Public("farm").String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := machine{drives: drive.Config{VirtualDir: dir, VirtualOnly: true}, ca: filepath.Join(f.PKI.Dir, pki.CACertFile), keys: keys}
	disk := filepath.Join(dir, "nvme0n1")
	factory := bytes.Repeat([]byte("factory!"), 512<<10)
	if err := os.WriteFile(disk, factory, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := Report{Identity: Identity{Vendor: "HP", Product: "HP EliteBook 840 G7", Serial: serial,
		UUID: "4c4c4544-0000-1000-8000-000000000043", NICs: []NIC{{Name: "eth0", MAC: mac}}}}
	run := func() Deploy {
		t.Helper()
		targets := &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{
			Devices: []*imagefarmv1.DeviceTarget{{Serial: serial}}}}}
		if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: targets}); err != nil {
			t.Fatal(err)
		}
		plan, err := boot.PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: mac, Arch: "bios"})
		if err != nil || plan.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
			t.Fatalf("PlanBoot = %v, %v; want DEPLOY", plan, err)
		}
		p, err := ParseParams("BOOTIF=01-52-54-00-00-00-43 imagefarm.token=" + plan.GetBootToken() + " imagefarm.controller=" + f.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return deploy(t.Context(), p, rep, m, slog.New(slog.DiscardHandler))
	}
	m1, err := f.Catalog.ManifestByDigest(t.Context(), f.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name, want string
		signer     *catalog.SigningKey
	}{
		{"unsigned", "has no signature", nil},
		{"signed by another key", "none of them trusted", other},
	} {
		if step.signer != nil {
			if err := f.Catalog.AddSignature(t.Context(), f.Digest, step.signer.Public("other"), step.signer.SignImage(m1, f.Digest)); err != nil {
				t.Fatal(err)
			}
		}
		got := run()
		if got.State != "TASK_STATE_FAILED" || !strings.Contains(got.Failure, step.want) || len(got.Warnings) != 0 {
			t.Errorf("%s: deploy = %+v, want FAILED saying %q, no warning", step.name, got, step.want)
		}
		if b, _ := os.ReadFile(disk); !bytes.Equal(b, factory) {
			t.Errorf("%s: the refused image was written", step.name)
		}
	}
	if err := f.Catalog.AddSignature(t.Context(), f.Digest, trusted.Public("farm"), trusted.SignImage(m1, f.Digest)); err != nil {
		t.Fatal(err)
	}
	if got := run(); got.State != "TASK_STATE_DONE" || got.Error != "" {
		t.Errorf("signed by the trusted key: deploy = %+v, want DONE", got)
	}
	if err := os.WriteFile(keys, []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(); !strings.Contains(got.Error, "rebuild it with build-env --trusted-keys") || got.TaskID != "" {
		t.Errorf("unreadable keys: deploy = %+v, want refused before enrolling, naming build-env --trusted-keys", got)
	}
}

func newKey(t *testing.T) *catalog.SigningKey {
	t.Helper()
	k, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
