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
	// seabiosPXE is SeaBIOS with a PXE client that does not say it is
	// iPXE, as a vendor's PXE ROM: the boot service gives it
	// undionly.kpxe over TFTP. Debian ships no PXE ROM but iPXE's, so
	// the NIC has no ROM and iPXE's ipxe.lkrn stands in for one, booted
	// by QEMU with vendorPXEScript: it sends user class "PXE" where iPXE
	// sends "iPXE", does DHCP and boots the file it is given over TFTP
	// through its PXE API, as a ROM does.
	seabiosPXE
)

func (f firmware) String() string {
	return [...]string{"SeaBIOS", "OVMF", "OVMF Secure Boot", "SeaBIOS vendor PXE"}[f]
}

// vendorPXEScript is what ipxe.lkrn runs for a seabiosPXE VM: the boot
// server and file of the proxyDHCP answer, as a PXE ROM takes them. The
// user class is cleared before the chain: the DHCP packets ipxe.lkrn hands
// to undionly.kpxe (through its PXE API) would carry it, and the iPXE in
// undionly.kpxe would say "PXE" too, and be given undionly.kpxe again.
const vendorPXEScript = `#!ipxe
set user-class PXE
dhcp
clear user-class
chain tftp://${proxydhcp/next-server}/${proxydhcp/filename}
`

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
	// noPXE turns off an OVMF VM's PXE boot entries (OVMF's fw_cfg
	// switches opt/org.tianocore/IPv4PXESupport and IPv6PXESupport):
	// its UEFI HTTP boot entry is then the first; noPXE6 turns off only
	// the IPv6 one, which the lab's LAN would keep waiting.
	noPXE, noPXE6 bool
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

// vmLimit is the longest a VM may take to power itself off under TCG,
// on a machine loaded by others too (5 VMs at once took 4 minutes at a
// load average of 25 on 2 cores; a UEFI VM with no work boots iPXE twice).
var vmLimit = 12 * time.Minute

// boot powers v on, its NIC on tap, and waits until it powers itself off,
// noting when its console first says each of watch.
func (l *lab) boot(t *testing.T, v vm, tap string, watch ...string) *run {
	t.Helper()
	args := []string{"-accel", accel(), "-m", "512", "-nographic", "-no-reboot", "-boot", "n",
		"-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=no,downscript=no", tap),
		"-smbios", "type=1,manufacturer=HP,product=HP EliteBook 840 G7,serial=" + v.serial(),
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}
	args = append(args, v.qemu...)
	switch v.fw {
	case seabiosPXE:
		script := filepath.Join(l.dir, v.name+".ipxe")
		if err := os.WriteFile(script, []byte(vendorPXEScript), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-kernel", "/usr/lib/ipxe/ipxe.lkrn", "-initrd", script)
		v.nic = cmp.Or(v.nic, "e1000") + ",romfile="
		fallthrough
	case seabios:
		if v.disk != "" {
			args = append(args, "-drive", "file="+v.disk+",format=raw,if=ide,snapshot=on")
		}
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
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+v.mac+",bootindex=1")
		if v.noPXE {
			args = append(args, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n")
		}
		if v.noPXE || v.noPXE6 {
			args = append(args, "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
		}
		if v.disk != "" {
			// The NIC first, then the disk: the boot order (QEMU's
			// bootindex, which OVMF follows) of a laptop that netboots
			// first. OVMF ignores -boot.
			args = append(args, "-drive", "file="+v.disk+",format=raw,if=none,id=local,snapshot=on",
				"-device", "virtio-blk-pci,drive=local,bootindex=2")
		}
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
