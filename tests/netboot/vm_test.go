package netboot_test

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// firmware is what a VM boots with.
type firmware int

const (
	seabios    firmware = iota // SeaBIOS; its NIC's PXE ROM is QEMU's iPXE
	ovmf                       // UEFI without Secure Boot; OVMF's own PXE
	ovmfSecure                 // UEFI, Microsoft's keys enrolled, Secure Boot on
)

func (f firmware) String() string { return [...]string{"SeaBIOS", "OVMF", "OVMF Secure Boot"}[f] }

// vm is one machine on the lab's LAN.
type vm struct {
	name string
	fw   firmware
	mac  string
	disk string // a disk image, or none
	// nic is the SeaBIOS VM's NIC model; e1000 when "".
	nic string
	// qemu are more QEMU arguments (a disk to write).
	qemu []string
}

// serial is the SMBIOS serial number the VM has.
func (v vm) serial() string { return "SN-" + v.name }

// run is one boot of a VM: when it was powered on, when its console first
// said each of the strings watched for, and all it said.
type run struct {
	vm      vm
	start   time.Time
	seen    map[string]time.Duration
	console string
}

// vmLimit is the longest a VM may take to power itself off under TCG.
const vmLimit = 4 * time.Minute

// boot powers v on, its NIC on tap, and waits until it powers itself off,
// noting when its console first says each of watch.
func (l *lab) boot(t *testing.T, v vm, tap string, watch ...string) *run {
	t.Helper()
	args := []string{"-accel", accel(), "-m", "512", "-nographic", "-no-reboot", "-boot", "n",
		"-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=no,downscript=no", tap),
		"-smbios", "type=1,manufacturer=HP,product=HP EliteBook 840 G7,serial=" + v.serial(),
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}
	args = append(args, v.qemu...)
	if v.disk != "" {
		args = append(args, "-drive", "file="+v.disk+",format=raw,if=ide,snapshot=on")
	}
	switch v.fw {
	case seabios:
		args = append(args, "-device", cmp.Or(v.nic, "e1000")+",netdev=n0,mac="+v.mac)
	case ovmf, ovmfSecure:
		code, vars, machine := ovmfCode, ovmfVars, "q35,smbios-entry-point-type=32"
		if v.fw == ovmfSecure {
			code, vars, machine = ovmfCodeSB, ovmfVarsSB, "q35,smm=on,smbios-entry-point-type=32"
			args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		// romfile= leaves out the NIC's iPXE ROM: the firmware's own PXE
		// boots, as on a laptop. The 32-bit SMBIOS entry point is the one
		// Debian's iPXE (2019) reads.
		args = append(args, "-machine", machine,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+copyFile(t, vars, filepath.Join(l.dir, v.name+"-vars.fd")),
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+v.mac)
	}
	r := &run{vm: v, start: time.Now(), seen: map[string]time.Duration{}}
	p := testenv.Start(t, "qemu-"+v.name, l.ns.Command(t, "qemu-system-x86_64", args...))
	deadline := time.After(vmLimit)
	for done := false; !done; {
		select {
		case <-p.Done():
			done = true
		case <-deadline:
			t.Errorf("%s (%s) did not power off within %v", v.name, v.fw, vmLimit)
			done = true
		case <-time.After(50 * time.Millisecond):
		}
		r.console = p.Output(t)
		for _, w := range watch {
			if _, ok := r.seen[w]; !ok && strings.Contains(r.console, w) {
				r.seen[w] = time.Since(r.start)
			}
		}
	}
	if t.Failed() {
		t.Logf("%s's console:\n%s", v.name, r.console)
	}
	return r
}

// accel is QEMU's accelerator: KVM when /dev/kvm can be opened, TCG (slow,
// but anywhere) otherwise.
func accel() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	return "kvm"
}

func copyFile(t *testing.T, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return to
}
