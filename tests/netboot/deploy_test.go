package netboot_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/deployenv/initproc"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// controllerAddr is where the lab's controller listens: on the bridge, so
// the deploy environment reaches it.
const controllerAddr = serviceAddr + ":7443"

// TestNetbootDeploysADevice is the whole network path under TCG: a farm
// (imagefarm dev: embedded NATS, file store, the controller on the
// bridge, TLS) has an image and a job for device SN-deploy; the boot
// service plans boots with the controller's PlanBoot; a SeaBIOS VM with
// that serial netboots (iPXE), gets the deploy environment with a boot
// token, enrolls over TLS verified against the farm CA, writes its virtio
// disk, verifies it and reboots. The test hashes the VM's disk file
// against the image and reads the device record.
func TestNetbootDeploysADevice(t *testing.T) {
	e := getEnv(t)
	kernel, initrd := filepath.Join(e.env, deployenv.KernelFile), filepath.Join(e.env, deployenv.InitrdFile)
	image := make([]byte, 6<<20)
	rand.Read(image)
	imageFile := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(imageFile, image, 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(t.TempDir(), "vda.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil || os.Truncate(disk, 64<<20) != nil {
		t.Fatal(err)
	}
	var farm *testenv.Proc
	var cli []string // the dev farm's exports
	l := newLab(t, e, labConfig{kernelArgs: []string{"console=ttyS0", "quiet", "panic=-1", "no_timer_check"}, controller: func(l *lab) []string {
		farm = testenv.Start(t, "imagefarm-dev", l.ns.Command(t, e.imagefarm, "dev", "--data", filepath.Join(l.dir, "farm"), "--listen", controllerAddr,
			"--drives", "1", "--drive-size", "16MiB"))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("imagefarm dev said:\n%s", farm.Output(t))
			}
		})
		l.waitFor(farm, "from another terminal")
		cli = devExports(t, farm.Output(t))
		out := l.cli(t, cli, "token", "create", "--name", "netboot", "--role", "operator")
		op := regexp.MustCompile(`ift_[A-Za-z0-9_-]+`).FindString(out)
		if op == "" {
			t.Fatalf("token create printed no secret:\n%s", out)
		}
		ca := ""
		for _, kv := range cli {
			if v, ok := strings.CutPrefix(kv, "IMAGEFARM_CA="); ok {
				ca = v
			}
		}
		l.cli(t, cli, "image", "push", "disk:1", imageFile)
		l.cli(t, cli, "job", "submit", "disk:1", "--device", "SN-deploy")
		return []string{"--controller", controllerAddr, "--ca", ca, "--token", op,
			"--kernel", kernel, "--initramfs", withFarmCA(t, initrd, ca)}
	}})
	v := vm{name: "deploy", fw: seabios, mac: "52:54:00:1f:00:09", nic: "virtio-net-pci",
		qemu: []string{"-drive", "file=" + disk + ",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=VDA-1"}}
	r := l.boot(t, v, l.ns.AddTap(t), initproc.ReportPrefix, initproc.DeployPrefix)
	console := r.console
	line := ""
	for _, s := range strings.Split(console, "\n") {
		if _, after, ok := strings.Cut(s, initproc.DeployPrefix); ok {
			line = strings.TrimSpace(after)
		}
	}
	var d initproc.Deploy
	if err := json.Unmarshal([]byte(line), &d); err != nil {
		t.Fatalf("no deploy line on the console (%v); console:\n%s", err, console)
	}
	if d.State != "TASK_STATE_DONE" || d.Then != initproc.ThenReboot || d.Error != "" {
		t.Fatalf("deploy = %+v, want TASK_STATE_DONE then reboot; console:\n%s", d, console)
	}
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sha256.Sum256(b[:len(image)]), sha256.Sum256(image); got != want {
		t.Errorf("the VM's disk holds sha256 %x over the image's length, want the image's %x", got, want)
	}
	show := l.cli(t, cli, "devices", "show", "SN-deploy", "--json")
	for _, want := range []string{d.JobID, d.Digest, "SN-deploy"} {
		if !strings.Contains(show, want) {
			t.Errorf("devices show SN-deploy has no %s:\n%s", want, show)
		}
	}
	var enrolled time.Time
	if m := regexp.MustCompile(`time=(\S+) level=INFO msg="device enrolled"`).FindStringSubmatch(farm.Output(t)); m != nil {
		enrolled, _ = time.Parse(time.RFC3339Nano, m[1])
	}
	t.Logf("figures: power-on to the report %.1fs, to registered (enrolled) %.1fs, to verified %.1fs (%d MiB image, %s)",
		r.seen[initproc.ReportPrefix].Seconds(), enrolled.Sub(r.start).Seconds(), r.seen[initproc.DeployPrefix].Seconds(), len(image)>>20, accel())
}

// withFarmCA is initrd with the farm CA at initproc.FarmCA, appended as a
// second newc archive (the kernel unpacks each in turn), as a site would
// until build-env puts it there.
func withFarmCA(t *testing.T, initrd, ca string) string {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(base)
	b.Write(make([]byte, (4-len(base)%4)%4)) // the kernel reads the next archive at a 4-byte boundary
	w := cpio.Newc.Writer(&b)
	name := strings.TrimPrefix(initproc.FarmCA, "/")
	for _, r := range []cpio.Record{cpio.Directory("etc", 0o755), cpio.Directory(filepath.Dir(name), 0o755),
		cpio.StaticRecord(pem, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644})} {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initramfs-with-ca")
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// devExports are the variables imagefarm dev prints for other terminals,
// KEY=VALUE, the token read from its file.
func devExports(t *testing.T, out string) []string {
	t.Helper()
	var env []string
	for _, m := range regexp.MustCompile(`(IMAGEFARM_[A-Z_]+)=(\$\(cat \S+\)|\S+)`).FindAllStringSubmatch(out, -1) {
		val := m[2]
		if file, ok := strings.CutPrefix(val, "$(cat "); ok {
			b, err := os.ReadFile(strings.TrimSuffix(file, ")"))
			if err != nil {
				t.Fatal(err)
			}
			val = strings.TrimSpace(string(b))
		}
		env = append(env, m[1]+"="+val)
	}
	if len(env) < 5 {
		t.Fatalf("imagefarm dev printed no exports:\n%s", out)
	}
	return env
}

// cli runs imagefarm in the lab's namespace with env and returns its
// output, failing the test if it fails.
func (l *lab) cli(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := l.ns.Command(t, env0(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("imagefarm %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// env0 is the imagefarm binary the lab runs.
func env0(t *testing.T) string { return getEnv(t).imagefarm }
