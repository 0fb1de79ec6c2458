package drive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	usbKeyPath  = "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-3/2-3.4/2-3.4:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
	usbLUN1Path = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host7/target7:0:0/7:0:0:1/block/sdd"
	sataPath    = "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
	nvmePath    = "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"
	virtioPath  = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
	mmcPath     = "/sys/devices/platform/fe320000.mmc/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1"
	loopPath    = "/sys/devices/virtual/block/loop3"
	sasPath     = "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host2/target2:0:1/2:0:1:0/block/sdc"
)

func TestTransportAndSlot(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		transport  Transport
		slot       string
	}{
		{"sdb", usbKeyPath, TransportUSB, "pci-0000:00:14.0-usb-0:3.4:1.0-scsi-0:0:0:0"},
		{"sdd", usbLUN1Path, TransportUSB, "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:1"},
		{"sda", sataPath, TransportSATA, "pci-0000:00:17.0-ata-1"},
		{"nvme0n1", nvmePath, TransportNVMe, "pci-0000:3d:00.0-nvme-1"},
		{"vda", virtioPath, TransportVirtio, "pci-0000:00:02.0"},
		{"mmcblk1", mmcPath, TransportMMC, "platform-fe320000.mmc"},
		{"loop3", loopPath, TransportLoop, ""},
		{"sdc", sasPath, TransportSCSI, "pci-0000:01:00.0-scsi-0:0:1:0"},
		{"zz", "/sys/devices/virtual/block/zz", TransportUnknown, ""},
	} {
		if got := transportOf(tc.name, tc.path); got != tc.transport {
			t.Errorf("transportOf(%s, %s) = %s, want %s", tc.name, tc.path, got, tc.transport)
		}
		if got := slotOf(tc.name, tc.path); got != tc.slot {
			t.Errorf("slotOf(%s, %s) = %q, want %q", tc.name, tc.path, got, tc.slot)
		}
	}
	// A re-plugged key gets another SCSI host and target number; the slot stays.
	replugged := strings.NewReplacer("host6", "host9", "target6", "target9", "6:0:0:0", "9:0:0:0").Replace(usbKeyPath)
	if a, b := slotOf("sdb", usbKeyPath), slotOf("sdc", replugged); a != b {
		t.Errorf("slot changed on re-plug: %s, then %s", a, b)
	}
}

// fakeSys builds a sysfs tree: each disk's device folder under devices/,
// its attributes, a block/NAME link to it, and its device link.
type fakeSys struct {
	t    *testing.T
	root string
}

func newFakeSys(t *testing.T) *fakeSys {
	root := t.TempDir()
	for _, d := range []string{"block", "class/block"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	return &fakeSys{t: t, root: root}
}

// disk adds a disk at sysPath (as in /sys/devices/...); files are written
// relative to the disk's folder ("../../vendor" reaches its device).
func (s *fakeSys) disk(sysPath string, files map[string]string) string {
	s.t.Helper()
	dir := filepath.Join(s.root, strings.TrimPrefix(sysPath, "/sys/"))
	name := filepath.Base(dir)
	s.write(dir, files)
	if filepath.Base(filepath.Dir(dir)) == "block" { // SCSI, virtio: device is two up
		os.Symlink(filepath.Dir(filepath.Dir(dir)), filepath.Join(dir, "device"))
	} else if _, err := os.Lstat(filepath.Join(dir, "device")); err != nil {
		os.Symlink(filepath.Dir(dir), filepath.Join(dir, "device"))
	}
	for _, l := range []string{"block/" + name, "class/block/" + name} {
		if err := os.Symlink(dir, filepath.Join(s.root, l)); err != nil {
			s.t.Fatal(err)
		}
	}
	return dir
}

func (s *fakeSys) write(dir string, files map[string]string) {
	s.t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
}

func disk(dev, sectors, removable string) map[string]string {
	return map[string]string{"dev": dev + "\n", "size": sectors + "\n", "removable": removable + "\n", "ro": "0\n",
		"queue/logical_block_size": "512\n", "queue/physical_block_size": "4096\n"}
}

func with(m map[string]string, kv ...string) map[string]string {
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestDiscoverFakeSysfs(t *testing.T) {
	s := newFakeSys(t)
	s.disk(usbKeyPath, with(disk("8:16", "60555264", "1"),
		"../../vendor", "Kingston", "../../model", "DataTraveler 3.0", // SCSI strings, space-padded by the kernel
		"../../../../../../idVendor", "0951", "../../../../../../serial", "60A44C413A8FE1A0B9B30029\n"))
	s.disk(sataPath, with(disk("8:0", "976773168", "0"),
		"../../vendor", "ATA     ", "../../model", "Samsung SSD 860 ", "../../wwid", "naa.5002538e40a1b2c3\n",
		"../../vpd_pg80", "\x00\x80\x00\x14    S3Z1NB0K123456X "))
	s.disk(nvmePath, with(disk("259:0", "1000215216", "0"), "wwid", "eui.0025388b91c4a2f1\n",
		"../model", "Samsung SSD 970 EVO Plus 1TB            \n", "../serial", "S4EWNX0R123456  \n"))
	s.disk("/sys/devices/pci0000:00/0000:00:14.0/usb2/2-4/2-4:1.0/host8/target8:0:0/8:0:0:0/block/sde",
		with(disk("8:64", "0", "1"))) // an empty card reader slot
	s.disk("/sys/devices/virtual/block/zram0", disk("253:0", "8388608", "0"))
	s.disk("/sys/devices/virtual/block/dm-0", disk("253:1", "8388608", "0"))

	drives, err := Discover(Config{SysRoot: s.root, SlotLabels: map[string]string{"pci-0000:00:14.0-usb-0:3.4:1.0-scsi-0:0:0:0": "bench 3, port 12"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Drive{
		{ID: "ata-Samsung_SSD_860_S3Z1NB0K123456X", Path: "/dev/sda", Name: "sda", Size: 976773168 * 512, Model: "Samsung SSD 860",
			Serial: "S3Z1NB0K123456X", WWN: "0x5002538e40a1b2c3", Transport: TransportSATA, Slot: "pci-0000:00:17.0-ata-1", DevNum: "8:0"},
		{ID: "usb-Kingston_DataTraveler_3.0_60A44C413A8FE1A0B9B30029", Path: "/dev/sdb", Name: "sdb", Size: 60555264 * 512,
			Vendor: "Kingston", Model: "DataTraveler 3.0", Serial: "60A44C413A8FE1A0B9B30029", Removable: true, Transport: TransportUSB,
			Slot: "pci-0000:00:14.0-usb-0:3.4:1.0-scsi-0:0:0:0", SlotLabel: "bench 3, port 12", DevNum: "8:16"},
		{ID: "nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456", Path: "/dev/nvme0n1", Name: "nvme0n1", Size: 1000215216 * 512,
			Model: "Samsung SSD 970 EVO Plus 1TB", Serial: "S4EWNX0R123456", WWN: "0x0025388b91c4a2f1", Transport: TransportNVMe,
			Slot: "pci-0000:3d:00.0-nvme-1", DevNum: "259:0"},
	}
	if len(drives) != len(want) {
		t.Fatalf("Discover() = %d drives %v, want %d", len(drives), names(drives), len(want))
	}
	for i, w := range want {
		w.LogicalBlockSize, w.PhysicalBlockSize = 512, 4096
		if drives[i] != w {
			t.Errorf("Discover()[%d] =\n  %+v\nwant\n  %+v", i, drives[i], w)
		}
	}
}

func TestStackHolders(t *testing.T) {
	s := newFakeSys(t)
	dir := s.disk(sataPath, disk("8:0", "976773168", "0"))
	s.write(dir, map[string]string{"sda1/partition": "1", "sda1/dev": "8:1", "sda2/partition": "2", "sda2/dev": "8:2"})
	os.MkdirAll(filepath.Join(dir, "sda2/holders/dm-0"), 0o755)
	dm := s.disk("/sys/devices/virtual/block/dm-0", disk("253:0", "8388608", "0"))
	os.MkdirAll(filepath.Join(dm, "holders/md0"), 0o755)
	s.disk("/sys/devices/virtual/block/md0", disk("9:0", "8388608", "0"))

	members, err := stackOf(s.root, "sda")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range members {
		got = append(got, m.Name+"="+m.DevNum+"@"+m.On)
	}
	if want := "sda=8:0@ sda1=8:1@ sda2=8:2@ dm-0=253:0@sda2 md0=9:0@dm-0"; strings.Join(got, " ") != want {
		t.Errorf("stackOf(sda) = %s, want %s", strings.Join(got, " "), want)
	}
	// / on an md array on LVM on sda2: sda is mounted, and held.
	v := checkMounted(members, []mount{{DevNum: "9:0", Point: "/", Source: "/dev/md0"}, {DevNum: "0:31", Point: "/run"}})
	if v.OK || v.Reason != "/dev/md0 is mounted on /" {
		t.Errorf("checkMounted() = %+v, want /dev/md0 is mounted on /", v)
	}
	if v := checkHolders(members); v.OK || v.Reason != "dm-0 is built on /dev/sda2, md0 is built on /dev/dm-0" {
		t.Errorf("checkHolders() = %+v", v)
	}
}

func TestIdentityParsing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ page, want string }{
		{"\x00\x80\x00\x11  WD-WCC4N1234567", "WD-WCC4N1234567"},
		{"\x00\x80\x00\x08ABC\x00\x00\x00\x00\x00", "ABC"},
		{"\x00\x80\x00\x40short", "short"}, // length beyond the page
		{"\x00\x83\x00\x04abcd", ""},       // another VPD page
		{"\x00\x80", ""},
	} {
		p := filepath.Join(dir, "vpd_pg80")
		os.WriteFile(p, []byte(tc.page), 0o644)
		if got := vpdSerial(p); got != tc.want {
			t.Errorf("vpdSerial(%q) = %q, want %q", tc.page, got, tc.want)
		}
	}
	for in, want := range map[string]string{"naa.5000c500a1b2c3d4": "0x5000c500a1b2c3d4", "eui.0025388b91c4a2f1": "0x0025388b91c4a2f1",
		"t10.ATA     Samsung SSD": "", "nvme.8086-50484b53": "", "": ""} {
		if got := wwnOf(in); got != want {
			t.Errorf("wwnOf(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"Kingston DataTraveler 3.0": "Kingston_DataTraveler_3.0", " a/b;c ": "a_b_c", "x\ty": "x_y"} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBlockID(t *testing.T) {
	for _, tc := range []struct {
		d    Drive
		lun  int
		want string
	}{
		{Drive{Transport: TransportUSB, Vendor: "SanDisk", Model: "Ultra", Serial: "4C53"}, 0, "usb-SanDisk_Ultra_4C53"},
		{Drive{Transport: TransportUSB, Vendor: "Generic", Model: "SD/MMC", Serial: "0123"}, 2, "usb-Generic_SD_MMC_0123-lun2"},
		{Drive{Transport: TransportSATA, Model: "ST1000", Serial: "Z1D"}, 0, "ata-ST1000_Z1D"},
		{Drive{Transport: TransportSCSI, WWN: "0x5000c500a1b2c3d4"}, 0, "wwn-0x5000c500a1b2c3d4"},
		{Drive{Transport: TransportUSB, Slot: "pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0"}, 0, "slot-pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0"},
		{Drive{Transport: TransportUnknown, Name: "sdx"}, -1, "dev-sdx"},
	} {
		if got := blockID(tc.d, tc.lun); got != tc.want {
			t.Errorf("blockID(%+v, %d) = %q, want %q", tc.d, tc.lun, got, tc.want)
		}
	}
	twins := []Drive{{ID: "usb-Cheap_Key_000", Slot: "s1"}, {ID: "usb-Cheap_Key_000", Slot: "s2"}, {ID: "usb-Other"}}
	uniqueIDs(twins)
	if twins[0].ID != "usb-Cheap_Key_000-s1" || twins[1].ID != "usb-Cheap_Key_000-s2" || twins[2].ID != "usb-Other" {
		t.Errorf("uniqueIDs() = %+v", twins)
	}
}

func TestLoadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.json")
	os.WriteFile(p, []byte(`{"slots": {"pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0": "bench 3, port 12"},
		"allow": ["ata-Samsung_SSD_860_S3Z"], "virtual_drives": "/srv/vd", "imager": {"other": "part"}}`), 0o644)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SlotLabels["pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0"] != "bench 3, port 12" || len(cfg.Allow) != 1 || cfg.VirtualDir != "/srv/vd" {
		t.Errorf("LoadConfig() = %+v", cfg)
	}
	os.WriteFile(p, []byte(`{"slots": ["not", "a", "map"]}`), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("LoadConfig(bad) = %v, want an error naming the file", err)
	}
	if _, err := LoadConfig(p + ".missing"); err == nil {
		t.Errorf("LoadConfig(missing) succeeded")
	}
}
