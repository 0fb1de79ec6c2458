package drive

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// udevMaxBytes bounds the read of one udev database entry; real entries
// are a few KiB, and a larger file is not one.
const udevMaxBytes = 64 << 10

// udevProps are the E:KEY=VALUE properties of one device's udev database
// entry. A nil udevProps (no udev, no entry, or an entry that is not to be
// trusted) fills nothing.
type udevProps map[string]string

// readUdev reads the udev database entry of block device devNum ("8:16")
// from dir (/run/udev/data/b8:16). A missing, oversized or malformed entry
// is no data: the database is an optional second source, never a reason
// to fail discovery.
func readUdev(dir, devNum string) udevProps {
	if dir == "" || devNum == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, "b"+devNum))
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, udevMaxBytes+1))
	if err != nil || len(b) > udevMaxBytes {
		return nil
	}
	return parseUdev(b)
}

// parseUdev parses an entry: one record a line, a type letter, a colon,
// then the record ("E:ID_BUS=usb", "S:disk/by-id/...", "I:1234"). Only
// properties (E) are kept. Anything that is not such a line makes the
// whole entry malformed, nil: a half-written or foreign file must not
// lend a disk a serial.
func parseUdev(b []byte) udevProps {
	if bytes.IndexByte(b, 0) >= 0 {
		return nil
	}
	props := udevProps{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != ':' {
			return nil
		}
		if line[0] != 'E' {
			continue
		}
		k, v, ok := strings.Cut(line[2:], "=")
		if !ok || k == "" {
			return nil
		}
		props[k] = v
	}
	return props
}

// text returns a string property as a technician should read it: the
// *_ENC form (the raw string, \xHH-escaped) when there is one, else the
// plain form, whose spaces udev turned into underscores.
func (p udevProps) text(key string) string {
	if enc, ok := p[key+"_ENC"]; ok {
		if s := clean(unescapeUdev(enc)); s != "" {
			return s
		}
	}
	return clean(strings.ReplaceAll(p[key], "_", " "))
}

var udevEscRe = regexp.MustCompile(`\\x[0-9a-fA-F]{2}`)

// unescapeUdev decodes udev's \xHH escapes.
func unescapeUdev(s string) string {
	return udevEscRe.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.ParseUint(m[2:], 16, 8)
		return string(rune(n))
	})
}

var wwnHexRe = regexp.MustCompile(`^0x[0-9a-f]+$`)

// wwn returns the world wide name in the form sysfs gives it ("0x" and
// hex digits), with the vendor extension where udev has it, as the
// kernel's wwid has it.
func (p udevProps) wwn() string {
	w := strings.ToLower(clean(firstOf(p["ID_WWN_WITH_EXTENSION"], p["ID_WWN"])))
	if !strings.HasPrefix(w, "0x") {
		w = wwnOf(w) // NVMe: "eui.0025..." as in the kernel's wwid
	}
	if !wwnHexRe.MatchString(w) {
		return ""
	}
	return w
}

// udevBus maps ID_BUS to a transport.
var udevBus = map[string]Transport{"ata": TransportSATA, "nvme": TransportNVMe, "scsi": TransportSCSI, "usb": TransportUSB}

// contradicts reports whether the entry describes another disk than the
// one sysfs shows at its device number: udevd did not see a re-plug
// (stopped, or a container's stale copy of /run/udev), and the whole
// entry is stale. Only clear contradictions count; the forms udev and
// sysfs use for the same facts differ too much for a closer test.
func (p udevProps) contradicts(d Drive) bool {
	if s := clean(p["ID_SERIAL_SHORT"]); s != "" && d.Serial != "" && !strings.EqualFold(sanitize(s), sanitize(d.Serial)) {
		return true
	}
	bus, ok := udevBus[p["ID_BUS"]]
	if !ok || d.Transport == TransportUnknown {
		return false
	}
	// A USB-SATA bridge that passes ATA commands through is ID_BUS=ata:
	// only usb on a disk sysfs shows elsewhere, or NVMe on one side only,
	// is another disk.
	return bus == TransportUSB && d.Transport != TransportUSB || (bus == TransportNVMe) != (d.Transport == TransportNVMe)
}

// fillFromUdev completes a disk read from sysfs with its udev database
// entry. Sysfs is read live and the database may be stale, so the entry
// only fills what sysfs left empty, never replaces what it read:
//
//   - Serial from ID_SERIAL_SHORT when sysfs has none (many USB bridges
//     hide it from sysfs but answer udev's inquiry);
//   - WWN from ID_WWN_WITH_EXTENSION or ID_WWN when sysfs has none;
//   - Vendor and Model from ID_VENDOR and ID_MODEL when sysfs's are empty
//     (a bare "ATA" vendor is dropped as from sysfs);
//   - Transport from ID_BUS (ata, nvme, scsi) only when sysfs could not
//     tell. Never usb: a USB disk always shows its USB bus in sysfs, and
//     usb admits a disk under the default allow policy, which stale data
//     must not do.
//
// The slot is the caller's: ID_PATH comes after /dev/disk/by-path and
// before the sysfs derivation. An entry that contradicts sysfs (another
// serial; usb for a disk sysfs shows elsewhere; nvme on one side only)
// describes a disk that was there before: nothing is taken from it, and
// fillFromUdev reports false so that the caller does not take its
// ID_PATH either.
func fillFromUdev(d *Drive, p udevProps) bool {
	if p == nil || p.contradicts(*d) {
		return false
	}
	d.Serial = firstOf(d.Serial, clean(p["ID_SERIAL_SHORT"]))
	d.WWN = firstOf(d.WWN, p.wwn())
	d.Vendor = firstOf(d.Vendor, vendorName(p.text("ID_VENDOR")))
	d.Model = firstOf(d.Model, p.text("ID_MODEL"))
	if t, ok := udevBus[p["ID_BUS"]]; ok && t != TransportUSB && d.Transport == TransportUnknown {
		d.Transport = t
	}
	return true
}
