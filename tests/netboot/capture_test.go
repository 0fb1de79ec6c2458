package netboot_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/deployenv/initproc"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestNetbootCapturesADevice captures a reference laptop and deploys the
// capture to its twin, under TCG, in one lab: VM A's virtio disk holds a
// known pattern with zero regions; the farm knows A (from an earlier
// netboot, which the test replays through the API rather than booting A
// twice); imagefarm job capture --device SN-capture-a makes A's next
// netboot read its disk and upload it through the controller, which
// stores it tagged with A's model and signed. Then imagefarm job submit
// of the capture --device SN-capture-b writes VM B, of the same model:
// B's disk file hashes as A's over the image's size.
func TestNetbootCapturesADevice(t *testing.T) {
	e := getEnv(t)
	const size = 24 << 20
	reference := make([]byte, size)
	rand.Read(reference[:4<<20])                // a partition
	copy(reference[12<<20:], reference[:3<<20]) // a copy of part of it, at another chunk's start
	rand.Read(reference[20<<20 : 22<<20])       // data at the end; the rest is zero
	diskA, diskB := filepath.Join(t.TempDir(), "a.img"), filepath.Join(t.TempDir(), "b.img")
	if err := os.WriteFile(diskA, reference, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(diskB, []byte(strings.Repeat("old twin", size/8)), 0o644); err != nil {
		t.Fatal(err)
	}
	a := vm{name: "capture-a", fw: seabios, mac: "52:54:00:1f:00:0a", nic: "virtio-net-pci",
		qemu: []string{"-uuid", "2b1e5f7c-8d3a-4c61-9e0f-0000000000aa",
			"-drive", "file=" + diskA + ",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=VDA-A"}}
	b := vm{name: "capture-b", fw: seabios, mac: "52:54:00:1f:00:0b", nic: "virtio-net-pci",
		qemu: []string{"-drive", "file=" + diskB + ",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=VDA-B"}}
	seed := filepath.Join(t.TempDir(), "seed.img")
	if err := os.WriteFile(seed, []byte(strings.Repeat("seed", 1024)), 0o644); err != nil {
		t.Fatal(err)
	}
	var cli []string
	// no_timer_check: under TCG on a loaded machine the kernel's check of
	// the IO-APIC timer fails now and then, and it panics.
	l := newLab(t, e, labConfig{kernelArgs: []string{"console=ttyS0", "quiet", "panic=-1", "no_timer_check"}, controller: func(l *lab) []string {
		var op, ca string
		cli, op, ca = startDevFarm(t, l, e)
		l.cli(t, cli, "image", "push", "seed:1", seed)
		// A's earlier netboot: an open device job lets an unknown
		// machine enroll; A enrolls with no work for it.
		wait := jobID(t, l.cli(t, cli, "job", "submit", "seed:1", "--device", "SN-nobody"))
		l.preEnroll(t, preEnroll{Controller: controllerAddr, CA: ca, Token: op, MAC: a.mac, UUID: "2b1e5f7c-8d3a-4c61-9e0f-0000000000aa",
			Serial: a.serial(), Vendor: "HP", Model: labModel, DiskSerial: "VDA-A", DiskSize: size})
		l.cli(t, cli, "job", "cancel", wait)
		return []string{"--controller", controllerAddr, "--ca", ca, "--token", op,
			"--kernel", e.kernel(), "--initramfs", withFarmCA(t, e.initrd(), ca)}
	}})
	capture := jobID(t, l.cli(t, cli, "job", "capture", "--device", a.serial(), "reference:1"))
	ra := l.boot(t, a, l.ns.AddTap(t), initproc.DeployPrefix)
	d := deployLine(t, ra)
	if d.State != "TASK_STATE_DONE" || d.Captured != "reference:1" || d.JobID != capture || d.Error != "" {
		t.Fatalf("A's capture = %+v, want TASK_STATE_DONE storing reference:1 for job %s; console:\n%s", d, capture, ra.console)
	}
	if got, _ := os.ReadFile(diskA); sha256.Sum256(got) != sha256.Sum256(reference) {
		t.Error("A's disk changed during its capture")
	}
	summary := l.cli(t, cli, "job", "watch", capture)
	for _, want := range []string{"captured reference:1 (" + d.Digest, fmt.Sprintf("model %q", labModel), "24 MiB read",
		"6 chunks: 3 sent", "3 zero", "signed by key"} {
		if !strings.Contains(summary, want) {
			t.Errorf("job watch %s says no %q:\n%s", capture, want, summary)
		}
	}
	if inspect := l.cli(t, cli, "image", "inspect", "reference:1", "--json"); !strings.Contains(inspect, labModel) {
		t.Errorf("image inspect reference:1 does not tag the model %q:\n%s", labModel, inspect)
	}

	l.cli(t, cli, "job", "submit", "reference:1", "--device", b.serial())
	rb := l.boot(t, b, l.ns.AddTap(t), initproc.DeployPrefix)
	if db := deployLine(t, rb); db.State != "TASK_STATE_DONE" || db.Digest != d.Digest {
		t.Fatalf("B's deploy = %+v, want TASK_STATE_DONE writing %s; console:\n%s", db, d.Digest, rb.console)
	}
	got, err := os.ReadFile(diskB)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got[:size]) != sha256.Sum256(reference) {
		t.Error("B's disk does not hash as A's over the image's size")
	}
	t.Logf("figures: A powered on to captured %.1fs, B to verified %.1fs (%d MiB disk, %s)",
		ra.seen[initproc.DeployPrefix].Seconds(), rb.seen[initproc.DeployPrefix].Seconds(), size>>20, accel())
}

// labModel is the SMBIOS product name of every lab VM (vm.boot).
const labModel = "HP EliteBook 840 G7"

// startDevFarm starts imagefarm dev in the lab with its controller on the
// bridge, and returns its exports, an operator token for the boot
// service and the farm CA.
func startDevFarm(t *testing.T, l *lab, e bootEnv) (cli []string, op, ca string) {
	t.Helper()
	farm := testenv.Start(t, "imagefarm-dev", l.ns.Command(t, e.imagefarm, "dev", "--data", filepath.Join(l.dir, "farm"), "--listen", controllerAddr,
		"--drives", "1", "--drive-size", "16MiB"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("imagefarm dev said:\n%s", farm.Output(t))
		}
	})
	l.waitFor(farm, "from another terminal")
	cli = devExports(t, farm.Output(t))
	out := l.cli(t, cli, "token", "create", "--name", "netboot", "--role", "operator")
	if op = regexp.MustCompile(`ift_[A-Za-z0-9_-]+`).FindString(out); op == "" {
		t.Fatalf("token create printed no secret:\n%s", out)
	}
	for _, kv := range cli {
		if v, ok := strings.CutPrefix(kv, "IMAGEFARM_CA="); ok {
			ca = v
		}
	}
	return cli, op, ca
}

// jobID is the job a job submit or capture printed.
func jobID(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`job (\S+) submitted`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no job id in:\n%s", out)
	}
	return m[1]
}

// deployLine is the deploy environment's outcome on r's console.
func deployLine(t *testing.T, r *run) initproc.Deploy {
	t.Helper()
	line := ""
	for _, s := range strings.Split(r.console, "\n") {
		if _, after, ok := strings.Cut(s, initproc.DeployPrefix); ok {
			line = strings.TrimSpace(after)
		}
	}
	var d initproc.Deploy
	if err := json.Unmarshal([]byte(line), &d); err != nil {
		t.Fatalf("no deploy line on %s's console (%v):\n%s", r.vm.name, err, r.console)
	}
	return d
}

// preEnroll is a device's first enrollment, replayed by this test binary
// run again inside the lab's namespace (TestMain): the boot service's
// PlanBoot for its MAC, then the deploy environment's Enroll with what
// the device is.
type preEnroll struct {
	Controller, CA, Token, MAC  string
	UUID, Serial, Vendor, Model string
	DiskSerial                  string
	DiskSize                    uint64
}

// preEnrollEnv carries a preEnroll to the re-run test binary.
const preEnrollEnv = "IMAGEFARM_TEST_PREENROLL"

// preEnroll runs p from inside the lab's namespace.
func (l *lab) preEnroll(t *testing.T, p preEnroll) {
	t.Helper()
	spec, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.ns.Command(t, os.Args[0])
	cmd.Env = append(os.Environ(), preEnrollEnv+"="+string(spec))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("enroll %s: %v\n%s", p.Serial, err, out)
	}
}

// TestMain runs a preEnroll when the environment carries one, else the
// tests.
func TestMain(m *testing.M) {
	if spec := os.Getenv(preEnrollEnv); spec != "" {
		if err := runPreEnroll(spec); err != nil {
			fmt.Fprintln(os.Stderr, "pre-enroll:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runPreEnroll(spec string) error {
	var p preEnroll
	if err := json.Unmarshal([]byte(spec), &p); err != nil {
		return err
	}
	cfg, err := pki.ClientConfig(p.CA, "", "")
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(p.Controller, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := imagefarmv1.NewDeviceServiceClient(conn)
	plan, err := c.PlanBoot(ctx, &imagefarmv1.PlanBootRequest{Mac: p.MAC, Arch: "bios"}, grpc.PerRPCCredentials(tokens.Bearer{Secret: p.Token}))
	if err != nil {
		return err
	}
	if plan.GetAction() != imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		return fmt.Errorf("PlanBoot(%s) = %v, want DEPLOY", p.MAC, plan)
	}
	resp, err := c.Enroll(ctx, &imagefarmv1.EnrollRequest{BootToken: plan.GetBootToken(), BootMac: p.MAC, Macs: []string{p.MAC}, Arch: "bios",
		Identity: &imagefarmv1.DeviceIdentity{Uuid: p.UUID, Serial: p.Serial, Vendor: p.Vendor, Model: p.Model},
		Disks:    []*imagefarmv1.Drive{{Id: "vda", Serial: p.DiskSerial, SizeBytes: p.DiskSize}}})
	if err != nil {
		return err
	}
	if resp.GetAssignment() != nil {
		return fmt.Errorf("enrollment got work %v, want none", resp.GetAssignment())
	}
	return nil
}
