// Package deployenv_test boots the deploy environment that imagefarm
// netboot build-env makes in a QEMU virtual machine, on a test network
// of its own with a real DHCP server (dnsmasq), and checks what the
// environment reports from inside.
package deployenv_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/deployenv/initproc"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// The virtual laptop.
const (
	vendor  = "HP"
	product = "HP EliteBook 840 G7"
	serial  = "CZC1234XYZ"
	uuid    = "5B4E1F0A-1111-2222-3333-444455556666"
	mac     = "52:54:00:12:34:56"
	token   = "boot-token-3f9a7c"
)

// TestBootReportsIdentity builds the deploy environment with the
// imagefarm binary (static, as a depot builds it) and boots it under
// QEMU (TCG: KVM may be missing) straight from its kernel and initramfs,
// as the boot service will hand them over. The VM has the SMBIOS identity
// of a laptop, a virtio and an NVMe disk inside, a USB key plugged in, and
// a virtio NIC on a network namespace whose only DHCP server is dnsmasq.
// The environment must report, on the console, the identity, its NIC and
// the lease dnsmasq gave it (asked for with its own vendor class), every
// disk with its serial and size (the USB key as USB and not internal),
// the disk the plan names found by serial and size, whether it got a
// boot token (never the token), and then power off as imagefarm.then
// says.
func TestBootReportsIdentity(t *testing.T) {
	qemu := testenv.Tool(t, "qemu-system-x86_64", "qemu-system-x86")
	dnsmasq := testenv.Tool(t, "dnsmasq", "dnsmasq-base")
	testenv.DebianKernel(t)
	ns := testenv.NewNetns(t, "198.18.0.1/24")
	env, built := buildEnv(t)

	leases := filepath.Join(t.TempDir(), "leases")
	dhcp := testenv.Start(t, "dnsmasq", ns.Command(t, dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface="+ns.Bridge, "--bind-interfaces", "--dhcp-range=198.18.0.50,198.18.0.99,1h",
		"--dhcp-leasefile="+leases, "--log-dhcp"))
	testenv.Eventually(t, 10*time.Second, "dnsmasq listening", func() bool {
		return strings.Contains(dhcp.Output(t), "DHCP, IP range")
	})

	disks := map[string]int64{"VIRTIO-DISK-1": 64 << 20, "NVME-DISK-1": 48 << 20, "USB-KEY-1": 32 << 20}
	files := map[string]string{}
	for s, size := range disks {
		files[s] = filepath.Join(t.TempDir(), s+".img")
		if err := os.WriteFile(files[s], nil, 0o644); err != nil || os.Truncate(files[s], size) != nil {
			t.Fatal(err)
		}
	}
	tap := ns.AddTap(t)
	start := time.Now()
	vm := testenv.Start(t, "vm", ns.Command(t, qemu, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", env.Kernel(), "-initrd", env.Initrd(),
		"-append", "console=ttyS0 panic=-1 quiet no_timer_check imagefarm.then=poweroff imagefarm.controller=198.18.0.1:8443 "+
			"imagefarm.token="+token+" BOOTIF=01-"+strings.ReplaceAll(mac, ":", "-")+
			" imagefarm.disk_serial=VIRTIO-DISK-1 imagefarm.disk_size=67108864",
		"-smbios", "type=1,manufacturer="+vendor+",product="+product+",serial="+serial+",uuid="+uuid,
		"-drive", "file="+files["VIRTIO-DISK-1"]+",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=VIRTIO-DISK-1",
		"-drive", "file="+files["NVME-DISK-1"]+",if=none,id=d1,format=raw", "-device", "nvme,drive=d1,serial=NVME-DISK-1",
		"-device", "qemu-xhci", "-drive", "file="+files["USB-KEY-1"]+",if=none,id=d2,format=raw", "-device", "usb-storage,drive=d2,serial=USB-KEY-1",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac="+mac))
	var line string
	testenv.Eventually(t, 4*time.Minute, "the deploy environment's report on the console", func() bool {
		line = reportLine(vm.Output(t))
		return line != ""
	})
	toReport := time.Since(start)
	vm.Wait(t, time.Minute) // imagefarm.then=poweroff: QEMU ends when the VM powers off
	console := vm.Output(t)
	if !strings.Contains(console, "reboot: Power down") {
		t.Errorf("the VM did not power off:\n%s", tail(console))
	}
	var rep initproc.Report
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("report %q: %v", line, err)
	}
	checkReport(t, rep, disks)
	checkLease(t, rep, leases, dhcp.Output(t))
	if strings.Contains(console, token) {
		t.Errorf("the console shows the boot token:\n%s", tail(console))
	}
	fi, _ := os.Stat(env.Initrd())
	t.Logf("figures: initramfs %d bytes (%.1f MiB), build-env %.1fs; QEMU start to report %.1fs (kernel uptime %.1fs; modules %.1fs, dhcp %.1fs, disks %.1fs)",
		fi.Size(), float64(fi.Size())/(1<<20), built.Seconds(), toReport.Seconds(), rep.Uptime,
		rep.Seconds["modules"], rep.Seconds["dhcp"], rep.Seconds["disks"])
}

// buildEnv builds imagefarm (static, stripped) and, with it, the deploy
// environment, and returns the environment and how long build-env took.
func buildEnv(t *testing.T) (*deployenv.Env, time.Duration) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "imagefarm")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/imagefarm")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "env")
	start := time.Now()
	testenv.Command(t, bin, "netboot", "build-env", "--out", out)
	took := time.Since(start)
	info, err := deployenv.ReadInfo(out)
	if err != nil {
		t.Fatal(err)
	}
	return &deployenv.Env{Dir: out, Info: info}, took
}

// reportLine returns the JSON of the report line on the console, "" if
// there is none yet.
func reportLine(console string) string {
	i := strings.Index(console, initproc.ReportPrefix)
	if i < 0 {
		return ""
	}
	rest := console[i+len(initproc.ReportPrefix):]
	end := strings.IndexByte(rest, '\n')
	if end < 0 {
		return "" // not all written yet
	}
	return strings.TrimRight(rest[:end], "\r")
}

func checkReport(t *testing.T, rep initproc.Report, disks map[string]int64) {
	t.Helper()
	if rep.Vendor != vendor || rep.Product != product || rep.Serial != serial || rep.UUID != strings.ToLower(uuid) {
		t.Errorf("identity %q %q %q %q, want %q %q %q %q", rep.Vendor, rep.Product, rep.Serial, rep.UUID, vendor, product, serial, strings.ToLower(uuid))
	}
	if len(rep.NICs) != 1 || rep.NICs[0].MAC != mac || rep.NICs[0].Driver != "virtio_net" {
		t.Errorf("NICs %+v, want one virtio_net NIC with MAC %s", rep.NICs, mac)
	}
	if len(rep.Errors) > 0 || !rep.Token || rep.Controller != "198.18.0.1:8443" || rep.Then != initproc.ThenPowerOff || rep.Modules < 40 {
		t.Errorf("report errors %q, token %v, controller %q, then %q, %d modules loaded; want no errors, a token, 198.18.0.1:8443, poweroff, all modules",
			rep.Errors, rep.Token, rep.Controller, rep.Then, rep.Modules)
	}
	want := map[string]initproc.Disk{
		"VIRTIO-DISK-1": {Serial: "VIRTIO-DISK-1", Transport: drive.TransportVirtio, Internal: true},
		"NVME-DISK-1":   {Serial: "NVME-DISK-1", Transport: drive.TransportNVMe, Internal: true},
		"USB-KEY-1":     {Serial: "USB-KEY-1", Transport: drive.TransportUSB, USB: true},
	}
	for _, d := range rep.Disks {
		w, ok := want[d.Serial]
		if !ok || d.Transport != w.Transport || d.Internal != w.Internal || d.USB != w.USB || d.Size != disks[d.Serial] || d.ReadOnly {
			t.Errorf("disk %+v, want %+v of %d bytes", d, w, disks[d.Serial])
		}
		delete(want, d.Serial)
	}
	for s := range want {
		t.Errorf("disk %s is not in the report %+v", s, rep.Disks)
	}
	if rep.Target == nil || rep.Target.Serial != "VIRTIO-DISK-1" || rep.Target.Path != "/dev/vda" {
		t.Errorf("target %+v, want the plan's disk VIRTIO-DISK-1 at /dev/vda", rep.Target)
	}
}

// checkLease: the address the environment reports is the one dnsmasq
// leased to its MAC, and dnsmasq saw the environment's vendor class.
func checkLease(t *testing.T, rep initproc.Report, leases, dhcpLog string) {
	t.Helper()
	if rep.Lease == nil {
		t.Fatal("no DHCP lease in the report")
	}
	data, err := os.ReadFile(leases)
	if err != nil {
		t.Fatal(err)
	}
	// dnsmasq's lease file: EXPIRY MAC IP HOSTNAME CLIENT-ID
	var leased string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == mac {
			leased = f[2]
		}
	}
	if leased == "" || rep.Lease.Address != leased+"/24" || rep.Lease.MAC != mac || rep.Lease.Server != "198.18.0.1" {
		t.Errorf("lease %+v; dnsmasq leased %q to %s (leases: %q)", rep.Lease, leased, mac, data)
	}
	if !regexp.MustCompile(`vendor class: ` + initproc.VendorClass).MatchString(dhcpLog) {
		t.Errorf("dnsmasq did not see vendor class %s:\n%s", initproc.VendorClass, dhcpLog)
	}
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}
