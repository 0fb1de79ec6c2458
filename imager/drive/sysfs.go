package drive

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// attr reads one sysfs attribute, trimmed; "" when it is absent or
// unreadable, because most attributes are optional and vary by driver.
func attr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return clean(string(b))
}

// attrInt reads a numeric attribute; missing or malformed reads as 0.
func attrInt(dir, name string) int64 {
	n, _ := strconv.ParseInt(attr(dir, name), 10, 64)
	return n
}

// vanished reports whether err means the device went away while it was
// being read, which hotplug makes normal.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

// clean trims padding (SCSI strings are space-padded, VPD pages
// NUL-padded) and drops control characters that would break a table.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

var (
	pciRe    = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$`)
	usbBusRe = regexp.MustCompile(`^usb\d+$`)
	usbIfRe  = regexp.MustCompile(`^\d+-([\d.]+):(\d+\.\d+)$`)
	ataRe    = regexp.MustCompile(`^ata(\d+)$`)
	scsiRe   = regexp.MustCompile(`^\d+:(\d+:\d+:(\d+))$`)
	nvmeNsRe = regexp.MustCompile(`^nvme\d+(?:c\d+)?n(\d+)$`)
	virtioRe = regexp.MustCompile(`^virtio\d+$`)
)

// components splits a resolved sysfs device path after "/devices/".
func components(devPath string) []string {
	_, rest, ok := strings.Cut(devPath, "/devices/")
	if !ok {
		return nil
	}
	return strings.Split(rest, "/")
}

// transportOf tells how a disk is attached from its kernel name and its
// resolved sysfs path. USB is tested first: a USB-SATA bridge also shows
// a SCSI host, and a USB card reader is not an MMC host.
func transportOf(name, devPath string) Transport {
	comps := components(devPath)
	has := func(re *regexp.Regexp) bool {
		for _, c := range comps {
			if re.MatchString(c) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(name, "loop"):
		return TransportLoop
	case has(usbBusRe):
		return TransportUSB
	case strings.HasPrefix(name, "nvme"):
		return TransportNVMe
	case strings.HasPrefix(name, "mmcblk"):
		return TransportMMC
	case has(ataRe):
		return TransportSATA
	case has(virtioRe):
		return TransportVirtio
	case has(scsiRe):
		return TransportSCSI
	}
	return TransportUnknown
}

// slotOf derives a /dev/disk/by-path style name from the resolved sysfs
// path, the way udev's path_id does, for hosts without udev. It keeps only
// what names the port (PCI function, USB port chain, ATA port, SCSI
// channel:target:lun, NVMe namespace) and drops what is numbered in plug
// order (SCSI host, USB bus device numbers), so a re-plugged drive keeps
// its slot. Virtual devices have no slot.
func slotOf(name, devPath string) string {
	comps := components(devPath)
	if len(comps) == 0 || comps[0] == "virtual" {
		return ""
	}
	var head string
	var rest []string
	ata := false
	for i, c := range comps {
		switch {
		case pciRe.MatchString(c):
			head, rest = "pci-"+c, nil // only the PCI function closest to the disk counts
		case i > 0 && comps[i-1] == "platform":
			head, rest = "platform-"+c, nil
		case usbIfRe.MatchString(c):
			m := usbIfRe.FindStringSubmatch(c)
			rest = append(rest, "usb-0:"+m[1]+":"+m[2])
		case ataRe.MatchString(c):
			ata = true
			rest = append(rest, "ata-"+ataRe.FindStringSubmatch(c)[1])
		case scsiRe.MatchString(c) && !ata:
			rest = append(rest, "scsi-0:"+scsiRe.FindStringSubmatch(c)[1])
		}
	}
	if m := nvmeNsRe.FindStringSubmatch(name); m != nil {
		rest = append(rest, "nvme-"+m[1])
	}
	if head == "" && len(rest) == 0 {
		return ""
	}
	return strings.Join(append([]string{head}, rest...), "-")
}

// scsiLUN returns the logical unit number in a SCSI device path, -1 if
// there is none: one USB card reader shows one disk per LUN, all with the
// reader's serial.
func scsiLUN(devPath string) int {
	lun := -1
	for _, c := range components(devPath) {
		if m := scsiRe.FindStringSubmatch(c); m != nil {
			lun, _ = strconv.Atoi(m[2])
		}
	}
	return lun
}

// readIdentity fills vendor, model, serial and WWN of a disk from sysfs.
// Where each lives depends on the driver: SCSI and USB bridges in the
// device's vendor/model and VPD page 0x80, NVMe and MMC in device/serial,
// virtio-blk in the disk's own serial, USB keys in the USB device above.
func readIdentity(dir, devPath string, d *Drive) {
	dev := filepath.Join(dir, "device")
	d.Vendor = attr(dev, "vendor")
	d.Model = firstOf(attr(dev, "model"), attr(dev, "name"))
	d.Serial = firstOf(attr(dir, "serial"), attr(dev, "serial"))
	if d.Transport == TransportUSB {
		if usb := usbDevice(devPath); usb != "" {
			d.Serial = firstOf(attr(usb, "serial"), d.Serial)
			d.Vendor = firstOf(d.Vendor, attr(usb, "manufacturer"))
			d.Model = firstOf(d.Model, attr(usb, "product"))
		}
	}
	if d.Serial == "" {
		d.Serial = vpdSerial(filepath.Join(dev, "vpd_pg80"))
	}
	d.WWN = wwnOf(firstOf(attr(dir, "wwid"), attr(dev, "wwid")))
	d.Vendor = vendorName(d.Vendor)
}

// vendorName drops vendors that say nothing to a technician: "ATA"
// (libata) and PCI vendor ids (virtio "0x1af4"); the model names the
// drive.
func vendorName(v string) string {
	if v == "ATA" || strings.HasPrefix(v, "0x") {
		return ""
	}
	return v
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// usbDevice finds the USB device (the one with idVendor) above a disk.
func usbDevice(devPath string) string {
	for p := filepath.Dir(devPath); strings.Contains(p, "/devices/"); p = filepath.Dir(p) {
		if _, err := os.Stat(filepath.Join(p, "idVendor")); err == nil {
			return p
		}
	}
	return ""
}

// vpdSerial parses a SCSI Unit Serial Number VPD page (0x80): a 4-byte
// header whose bytes 2-3 are the length, then the serial.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		n = len(b) - 4
	}
	return clean(string(b[4 : 4+n]))
}

// wwnOf keeps world wide names (NAA, EUI-64) from a wwid attribute; the
// "t10." form is vendor+model+serial again, not a WWN.
func wwnOf(wwid string) string {
	for _, p := range []string{"naa.", "eui."} {
		if strings.HasPrefix(wwid, p) {
			return "0x" + strings.TrimPrefix(wwid, p)
		}
	}
	return ""
}
