package drive

import (
	"os"
	"path/filepath"
	"testing"
)

const (
	bridgePath = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/host7/target7:0:0/7:0:0:0/block/sdc"
	xenPath    = "/sys/devices/vbd-51712/block/xvda"
	// sandiskUdev is what udevd writes for a USB key whose bridge shows
	// sysfs no serial, vendor or model.
	sandiskUdev = "S:disk/by-id/usb-SanDisk_Ultra_4C530001230512115365-0:0\nI:5127382193\n" +
		"E:ID_BUS=usb\nE:ID_MODEL=Ultra_Fit\nE:ID_MODEL_ENC=Ultra\\x20Fit\\x20\\x20\nE:ID_VENDOR=SanDisk\n" +
		"E:ID_SERIAL=SanDisk_Ultra_4C530001230512115365-0:0\nE:ID_SERIAL_SHORT=4C530001230512115365\n" +
		"E:ID_WWN=0x5000c500a1b2c3d4\nE:ID_USB_DRIVER=usb-storage\n" +
		"E:ID_PATH=pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0\nG:systemd\nQ:systemd\nV:1\n"
)

// fakeUdev writes udev database entries ("8:32" → /run/udev/data/b8:32)
// into a new folder and returns it.
func fakeUdev(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for devNum, content := range entries {
		if err := os.WriteFile(filepath.Join(dir, "b"+devNum), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// udevSys is a fake sysfs with one disk of each case udev data changes.
func udevSys(t *testing.T) *fakeSys {
	s := newFakeSys(t)
	s.disk(bridgePath, disk("8:32", "60555264", "1")) // a bridge that tells sysfs nothing
	s.disk(sataPath, with(disk("8:0", "976773168", "0"),
		"../../vendor", "ATA     ", "../../model", "Samsung SSD 860 ", "../../vpd_pg80", "\x00\x80\x00\x0fS3Z1NB0K123456X"))
	s.disk(usbKeyPath, with(disk("8:16", "60555264", "1"),
		"../../vendor", "Kingston", "../../model", "DataTraveler 3.0",
		"../../../../../../idVendor", "0951", "../../../../../../serial", "60A44C413A8FE1A0B9B30029\n"))
	s.disk(xenPath, disk("202:0", "41943040", "0"))
	return s
}

func TestDiscoverFakeUdev(t *testing.T) {
	s := udevSys(t)
	without, err := Discover(Config{SysRoot: s.root})
	if err != nil {
		t.Fatal(err)
	}
	udev := fakeUdev(t, map[string]string{
		"8:32": sandiskUdev,
		// Both know the disk: sysfs's vendor (none, "ATA"), model and
		// serial stay; the WWN and ID_PATH, which sysfs lacks or derives,
		// are taken.
		"8:0": "E:ID_BUS=ata\nE:ID_VENDOR=ATA\nE:ID_MODEL=Samsung_SSD_860_EVO_500GB\nE:ID_SERIAL_SHORT=S3Z1NB0K123456X\n" +
			"E:ID_WWN=0x5002538e40a1b2c3\nE:ID_PATH=pci-0000:00:17.0-ata-1.0\n",
		// A stale entry: another disk had 8:16 before. Nothing is taken.
		"8:16": "E:ID_BUS=usb\nE:ID_SERIAL_SHORT=0000DEADBEEF\nE:ID_VENDOR=Other\nE:ID_MODEL=Key\n" +
			"E:ID_WWN=0x5000000000000001\nE:ID_PATH=pci-0000:00:14.0-usb-0:9:1.0-scsi-0:0:0:0\n",
		// Sysfs cannot tell the transport; ID_BUS can.
		"202:0": "E:ID_BUS=scsi\nE:ID_MODEL=Virtual_disk\nE:ID_PATH=xen-vbd-51712\n",
	})
	drives, err := Discover(Config{SysRoot: s.root, UdevDir: udev})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Drive{
		"sdc": {ID: "usb-SanDisk_Ultra_Fit_4C530001230512115365", Vendor: "SanDisk", Model: "Ultra Fit", Serial: "4C530001230512115365",
			WWN: "0x5000c500a1b2c3d4", Transport: TransportUSB, Slot: "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0"},
		"sda": {ID: "ata-Samsung_SSD_860_S3Z1NB0K123456X", Model: "Samsung SSD 860", Serial: "S3Z1NB0K123456X",
			WWN: "0x5002538e40a1b2c3", Transport: TransportSATA, Slot: "pci-0000:00:17.0-ata-1.0"},
		"sdb":  driveNamed(t, without, "sdb"),
		"xvda": {ID: "slot-xen-vbd-51712", Model: "Virtual disk", Transport: TransportSCSI, Slot: "xen-vbd-51712"},
	}
	if len(drives) != len(want) {
		t.Fatalf("Discover() = %v, want %d drives", names(drives), len(want))
	}
	for _, d := range drives {
		got, w := identity(d), identity(want[d.Name])
		if got != w {
			t.Errorf("Discover() %s = %+v, want %+v", d.Name, got, w)
		}
	}
}

// identity is the part of a drive udev data may change.
func identity(d Drive) Drive {
	return Drive{ID: d.ID, Vendor: d.Vendor, Model: d.Model, Serial: d.Serial, WWN: d.WWN, Transport: d.Transport, Slot: d.Slot}
}

func driveNamed(t *testing.T, drives []Drive, name string) Drive {
	t.Helper()
	for _, d := range drives {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no drive %s in %v", name, names(drives))
	return Drive{}
}

// Without a udev database, or with one that has nothing usable, discovery
// is sysfs's alone.
func TestDiscoverNoUdev(t *testing.T) {
	s := udevSys(t)
	want, err := Discover(Config{SysRoot: s.root})
	if err != nil {
		t.Fatal(err)
	}
	if d := driveNamed(t, want, "sdc"); d.Serial != "" || d.ID != "slot-pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0" {
		t.Errorf("Discover() without udev: sdc = %+v, want no serial and a slot id", d)
	}
	for name, dir := range map[string]string{
		"missing folder": filepath.Join(t.TempDir(), "none"),
		"empty folder":   t.TempDir(),
		"garbage": fakeUdev(t, map[string]string{
			"8:32":  "\x7fELF\x02\x01\x01\x00E:ID_SERIAL_SHORT=X\n",
			"8:0":   "not a udev entry\nE:ID_WWN=0x5000c500a1b2c3d4\n",
			"8:16":  "E:=empty key\nE:ID_MODEL=X\n",
			"202:0": "E:ID_BUS=usb\nE:ID_WWN=naa-not-hex\n", // usb is no hint; the WWN is no WWN
		}),
	} {
		got, err := Discover(Config{SysRoot: s.root, UdevDir: dir})
		if err != nil {
			t.Fatalf("Discover() with %s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("Discover() with %s = %v, want %v", name, names(got), names(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("Discover() with %s: %s =\n  %+v\nwant\n  %+v", name, want[i].Name, got[i], want[i])
			}
		}
	}
}

func TestParseUdev(t *testing.T) {
	big := make([]byte, udevMaxBytes+1)
	for i := range big {
		big[i] = '\n'
	}
	for _, tc := range []struct {
		in   string
		want map[string]string // nil: no data
	}{
		{"E:ID_BUS=usb\nS:disk/by-id/x\nI:12\nE:ID_SERIAL=a=b\n", map[string]string{"ID_BUS": "usb", "ID_SERIAL": "a=b"}},
		{"E:ID_BUS=usb\r\n\nV:1", map[string]string{"ID_BUS": "usb"}},
		{"", map[string]string{}},
		{"E:ID_BUS\n", nil},
		{"E:=x\n", nil},
		{"ID_BUS=usb\n", nil},
		{"E:ID_BUS=usb\n\x00\x00", nil},
		{string(big), nil},
	} {
		dir := fakeUdev(t, map[string]string{"8:0": tc.in})
		got := readUdev(dir, "8:0")
		if (got == nil) != (tc.want == nil) || len(got) != len(tc.want) {
			t.Errorf("readUdev(%.40q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("readUdev(%.40q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
	for in, want := range map[string]string{"0x5000C500A1B2C3D4": "0x5000c500a1b2c3d4", "eui.0025388b91c4a2f1": "0x0025388b91c4a2f1",
		"nvme.8086-50484b53": "", "0xzz": "", "": ""} {
		if got := (udevProps{"ID_WWN": in}).wwn(); got != want {
			t.Errorf("udevProps{ID_WWN: %q}.wwn() = %q, want %q", in, got, want)
		}
	}
	if got := (udevProps{"ID_WWN": "0x6005076810810261", "ID_WWN_WITH_EXTENSION": "0x600507681081026190000000000001b4"}).wwn(); got != "0x600507681081026190000000000001b4" {
		t.Errorf("wwn() = %q, want the WWN with its vendor extension", got)
	}
}

func TestUdevContradicts(t *testing.T) {
	usbKey := Drive{Transport: TransportUSB, Serial: "60A44C413A8FE1A0B9B30029"}
	for _, tc := range []struct {
		d    Drive
		p    udevProps
		want bool
	}{
		{usbKey, udevProps{"ID_BUS": "usb", "ID_SERIAL_SHORT": "60a44c413a8fe1a0b9b30029"}, false},
		{usbKey, udevProps{"ID_BUS": "ata"}, false}, // a bridge passing ATA through
		{usbKey, udevProps{"ID_SERIAL_SHORT": "0000DEADBEEF"}, true},
		{usbKey, udevProps{"ID_BUS": "nvme"}, true},
		{Drive{Transport: TransportSATA, Serial: "S3Z1 NB0K"}, udevProps{"ID_BUS": "ata", "ID_SERIAL_SHORT": "S3Z1_NB0K"}, false},
		{Drive{Transport: TransportSATA}, udevProps{"ID_BUS": "usb"}, true},
		{Drive{Transport: TransportNVMe}, udevProps{"ID_BUS": "scsi"}, true},
		{Drive{Transport: TransportNVMe}, udevProps{"ID_BUS": "nvme"}, false},
		{Drive{Transport: TransportUnknown}, udevProps{"ID_BUS": "usb"}, false},
		{Drive{Transport: TransportVirtio}, udevProps{"ID_BUS": "scsi"}, false},
	} {
		if got := tc.p.contradicts(tc.d); got != tc.want {
			t.Errorf("%v.contradicts(%+v) = %t, want %t", tc.p, tc.d, got, tc.want)
		}
	}
}

// A drive planned before udevd wrote its entry is the same drive once
// the entry is there; a drive whose udev serial changed is not.
func TestReverifyUdevCaughtUp(t *testing.T) {
	s := udevSys(t)
	udev := t.TempDir()
	cfg := Config{SysRoot: s.root, UdevDir: udev}
	early := driveNamed(t, mustDiscover(t, cfg), "sdc")

	os.WriteFile(filepath.Join(udev, "b8:32"), []byte(sandiskUdev), 0o644)
	late := driveNamed(t, mustDiscover(t, cfg), "sdc")
	if late.Serial == "" || late.ID == early.ID {
		t.Fatalf("Discover() after udev = %+v, want a serial and a serial id", late)
	}
	if now, err := Reverify(early, cfg); err != nil || now.ID != early.ID {
		t.Errorf("Reverify(planned before udev) = %s, %v, want %s, nil", now.ID, err, early.ID)
	}
	if now, err := Reverify(late, cfg); err != nil || now != late {
		t.Errorf("Reverify(planned with udev) = %+v, %v, want %+v", now, err, late)
	}

	// Another key in the same bridge: sysfs cannot tell, udev can.
	os.WriteFile(filepath.Join(udev, "b8:32"), []byte("E:ID_BUS=usb\nE:ID_VENDOR=SanDisk\nE:ID_MODEL=Ultra_Fit\nE:ID_SERIAL_SHORT=4C530009999999999999\n"), 0o644)
	_, err := Reverify(late, cfg)
	if m := identityFields(t, err)["serial"]; m.Got != "4C530009999999999999" || m.Want != late.Serial {
		t.Errorf("Reverify() after a swap = %v, want the serial named", err)
	}

	// The entry gone (udevd stopped, database cleared): sysfs alone cannot
	// confirm the serial the drive was planned with.
	os.Remove(filepath.Join(udev, "b8:32"))
	_, err = Reverify(late, cfg)
	if m := identityFields(t, err)["serial"]; m.Got != "" || m.Want != late.Serial {
		t.Errorf("Reverify() without the entry = %v, want the serial named", err)
	}
}

func mustDiscover(t *testing.T, cfg Config) []Drive {
	t.Helper()
	drives, err := Discover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return drives
}
