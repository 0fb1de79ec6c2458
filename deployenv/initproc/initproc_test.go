package initproc

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/imager/drive"
)

// TestParseParams: the kernel command line's parameters are read as the
// kernel splits them (quotes kept together, removed from values), and
// values that do not parse are errors naming the parameter, leaving the
// environment to wait rather than guess.
func TestParseParams(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    Params
		err     string
	}{
		{"console=ttyS0 quiet imagefarm.controller=198.18.0.1:8443 imagefarm.token=abc imagefarm.then=reboot BOOTIF=01-52-54-00-12-34-56\n",
			Params{Controller: "198.18.0.1:8443", Token: "abc", Then: ThenReboot, BootMAC: "52:54:00:12:34:56"}, ""},
		{`imagefarm.token="a b" "imagefarm.controller=[fd00::1]:8443" imagefarm.then=poweroff`,
			Params{Controller: "[fd00::1]:8443", Token: "a b", Then: ThenPowerOff}, ""},
		{"imagefarm.then=poweroff imagefarm.then=reboot", Params{Then: ThenReboot}, ""}, // the later one, as the kernel
		{"", Params{}, ""},
		{`imagefarm.token="`, Params{}, ""}, // a lone quote: no panic, an empty token
		{`"`, Params{}, ""},
		{"imagefarm.then=format-c", Params{}, `imagefarm.then="format-c": want poweroff or reboot`},
		{"imagefarm.insecure=1", Params{Insecure: true}, ""},
		{"imagefarm.insecure=0", Params{}, ""},
		{"imagefarm.insecure=yes", Params{}, `imagefarm.insecure="yes": want 1`},
		{"imagefarm.controller=198.18.0.1", Params{Controller: "198.18.0.1"}, "want HOST:PORT"},
		{"BOOTIF=52:54:00:12:34:56", Params{}, "want 01-aa-bb-cc-dd-ee-ff"},
		{"BOOTIF=06-52-54-00-12-34-56", Params{}, "an Ethernet MAC"},
		{`imagefarm.disk_serial="S4EW NX0R" imagefarm.disk_size=512110190592`, Params{Disk: &Want{Serial: "S4EW NX0R", Size: 512110190592}}, ""},
		{"imagefarm.disk_serial=S4EWNX0R", Params{}, "want a disk's serial and its size in bytes, both"},
		{"imagefarm.disk_size=512110190592", Params{}, "want a disk's serial and its size in bytes, both"},
		{"imagefarm.disk_serial=S4EWNX0R imagefarm.disk_size=-1", Params{}, "want a disk's serial and its size"},
		{"imagefarm.disk_serial=S4EWNX0R imagefarm.disk_size=1e9", Params{}, "want a disk's serial and its size"},
		{"imagefarm.debug.dd=http://198.18.0.1:8099/image", Params{DebugDD: "http://198.18.0.1:8099/image"}, ""},
		{"imagefarm.debug.dd=/dev/sda", Params{}, `imagefarm.debug.dd="/dev/sda": want an http:// URL`},
		{"imagefarm.debug.dd=", Params{}, "imagefarm.debug.dd=\"\": want an http:// URL"},
	} {
		got, err := ParseParams(tc.cmdline)
		if !reflect.DeepEqual(got, tc.want) || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseParams(%q) = %+v, %v; want %+v, %q", tc.cmdline, got, err, tc.want, tc.err)
		}
	}
}

// TestIsInit: the kernel's /init is the deploy environment; imagefarm run
// as a container's PID 1 (argv[0] its own name) is not.
func TestIsInit(t *testing.T) {
	for _, tc := range []struct {
		pid   int
		argv0 string
		want  bool
	}{
		{1, "/init", true}, {1, "init", true}, {1, "/sbin/init", true}, {42, "/init", true},
		{1, "imagefarm", false}, {1, "/usr/local/bin/imagefarm", false}, {42, "init", false}, {42, "imagefarm", false},
	} {
		if got := IsInit(tc.pid, tc.argv0); got != tc.want {
			t.Errorf("IsInit(%d, %q) = %v, want %v", tc.pid, tc.argv0, got, tc.want)
		}
	}
}

// TestReadIdentity reads SMBIOS and NICs from a sysfs tree; placeholders
// vendors ship in unset fields read as unset, and only Ethernet NICs
// backed by a device count.
func TestReadIdentity(t *testing.T) {
	sys := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sys, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for f, v := range map[string]string{
		"sys_vendor": "LENOVO\n", "product_name": "20S0CTO1WW\n", "product_version": "ThinkPad T14 Gen 1\n",
		"product_serial": "PF2ABCDE\n", "product_uuid": "5B4E1F0A-1111-2222-3333-444455556666\n",
		"product_sku": "To be filled by O.E.M.\n", "product_family": "Default string\n",
	} {
		write("class/dmi/id/"+f, v)
	}
	write("class/net/eth0/type", "1\n")
	write("class/net/eth0/address", "52:54:00:AB:CD:EF\n")
	write("class/net/eth0/device/vendor", "0x8086\n")
	if err := os.Symlink("../../../bus/pci/drivers/e1000e", filepath.Join(sys, "class/net/eth0/device/driver")); err != nil {
		t.Fatal(err)
	}
	write("class/net/lo/type", "772\n")
	write("class/net/lo/address", "00:00:00:00:00:00\n")
	write("class/net/br0/type", "1\n") // no device: a bridge
	write("class/net/br0/address", "52:54:00:00:00:01\n")
	got := ReadIdentity(sys)
	want := Identity{Vendor: "LENOVO", Product: "20S0CTO1WW", Version: "ThinkPad T14 Gen 1", Serial: "PF2ABCDE",
		UUID: "5b4e1f0a-1111-2222-3333-444455556666", NICs: []NIC{{Name: "eth0", MAC: "52:54:00:ab:cd:ef", Driver: "e1000e"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadIdentity = %+v,\nwant %+v", got, want)
	}
	write("class/dmi/id/product_uuid", "00000000-0000-0000-0000-000000000000\n")
	write("class/dmi/id/product_serial", "System Serial Number\n")
	if got := ReadIdentity(sys); got.UUID != "" || got.Serial != "" {
		t.Errorf("ReadIdentity with placeholder UUID and serial = %q, %q; want both unset", got.UUID, got.Serial)
	}
}

// TestSelectDisk: the disk a plan names is found by serial and size,
// and only an internal disk is ever chosen; a plan with no serial, a
// serial no disk or two disks have, a size that changed, and a USB,
// removable or read-only disk are refused, naming what the device has.
func TestSelectDisk(t *testing.T) {
	nvme := drive.Drive{Path: "/dev/nvme0n1", Serial: "S4EWNX0R", Size: 512e9, Transport: drive.TransportNVMe}
	usb := drive.Drive{Path: "/dev/sda", Serial: "USBKEY", Size: 32e9, Transport: drive.TransportUSB}
	card := drive.Drive{Path: "/dev/mmcblk0", Serial: "0x1234", Size: 64e9, Transport: drive.TransportMMC, Removable: true}
	ro := drive.Drive{Path: "/dev/sdb", Serial: "RO1", Size: 1e9, Transport: drive.TransportSATA, ReadOnly: true}
	twinA := drive.Drive{Path: "/dev/sdc", Serial: "TWIN", Size: 1e9, Transport: drive.TransportSATA}
	twinB := drive.Drive{Path: "/dev/sdd", Serial: "TWIN", Size: 1e9, Transport: drive.TransportSATA}
	drives := []drive.Drive{nvme, usb, card, ro, twinA, twinB}
	if got, err := SelectDisk(drives, Want{Serial: "S4EWNX0R", Size: 512e9}); err != nil || got.Path != nvme.Path {
		t.Errorf("SelectDisk(the NVMe disk) = %v, %v; want %s", got.Path, err, nvme.Path)
	}
	for _, tc := range []struct {
		want Want
		is   error
		says string
	}{
		{Want{Size: 512e9}, ErrNoDisk, "the plan names no disk serial; a disk is never chosen without one"},
		{Want{Serial: "NOPE", Size: 1}, ErrNoDisk, `no disk has serial "NOPE"; the device has /dev/nvme0n1 (serial "S4EWNX0R", 512000000000 bytes, nvme)`},
		{Want{Serial: "TWIN", Size: 1e9}, ErrNoDisk, `2 disks have serial "TWIN"`},
		{Want{Serial: "S4EWNX0R", Size: 256e9}, ErrNoDisk, "has 512000000000 bytes, the plan says 256000000000"},
		{Want{Serial: "USBKEY", Size: 32e9}, ErrNotInternal, "/dev/sda (serial \"USBKEY\") is on USB: only the device's internal disk is written"},
		{Want{Serial: "0x1234", Size: 64e9}, ErrNotInternal, "is removable"},
		{Want{Serial: "RO1", Size: 1e9}, ErrNotInternal, "is read-only"},
	} {
		got, err := SelectDisk(drives, tc.want)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) || got.Path != "" {
			t.Errorf("SelectDisk(%+v) = %q, %v; want %v saying %q", tc.want, got.Path, err, tc.is, tc.says)
		}
	}
	if d := DiskOf(usb); d.Internal || !d.USB {
		t.Errorf("DiskOf(a USB disk) = %+v, want usb and not internal", d)
	}
	if d := DiskOf(nvme); !d.Internal || d.USB {
		t.Errorf("DiskOf(an NVMe disk) = %+v, want internal", d)
	}
}

// TestUSBPending: a USB mass-storage interface bound to its driver is
// pending until a SCSI disk appears under it (usb-storage waits a second
// before it scans); an interface of another class, or one no driver has
// bound, is not waited for.
func TestUSBPending(t *testing.T) {
	sys := t.TempDir()
	iface := filepath.Join(sys, "bus/usb/devices/2-1:1.0")
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		t.Helper()
		mk(filepath.Dir(p))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(iface, "bInterfaceClass"), "08\n")
	write(filepath.Join(sys, "bus/usb/devices/3-1:1.0/bInterfaceClass"), "03\n") // a keyboard
	if usbPending(sys) {
		t.Error("usbPending with no driver bound = true, want false")
	}
	mk(filepath.Join(sys, "bus/usb/drivers/usb-storage"))
	if err := os.Symlink("../../drivers/usb-storage", filepath.Join(iface, "driver")); err != nil {
		t.Fatal(err)
	}
	mk(filepath.Join(iface, "host0/scsi_host"))
	if !usbPending(sys) {
		t.Error("usbPending with usb-storage bound and no disk = false, want true")
	}
	mk(filepath.Join(iface, "host0/target0:0:0/0:0:0:0/block/sda"))
	if usbPending(sys) {
		t.Error("usbPending with the disk there = true, want false")
	}
}
