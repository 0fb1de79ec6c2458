package drive

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"
)

// Guard names. Check reports the passive guards in this order; Reverify
// and OpenExclusive are the identity and exclusive guards, run at open.
const (
	GuardSystem    = "system"    // holds /, /boot, /boot/efi, /efi or an active swap
	GuardCache     = "cache"     // holds the node cache
	GuardMounted   = "mounted"   // the disk or a partition of it is mounted
	GuardHolders   = "holders"   // device-mapper, LVM, md or bcache is built on it
	GuardPolicy    = "policy"    // not removable or USB, and not allowed
	GuardSize      = "size"      // smaller than the image
	GuardReadOnly  = "read-only" // the kernel or the file refuses writes
	GuardIdentity  = "identity"  // changed since it was planned (Reverify)
	GuardExclusive = "exclusive" // cannot be opened with O_EXCL (OpenExclusive)
)

// Verdict is what one guard said about a drive.
type Verdict struct {
	Guard  string `json:"guard"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// Check runs every passive guard on d for an image of imageSize bytes (0:
// no size to check) and returns all verdicts, passed or not, so that a dry
// run can show what each said. d must come from Discover or Reverify on
// this node. Check reads sysfs and the mount table and writes nothing.
// When it cannot tell (mount table unreadable, drive gone or replaced)
// the guards concerned refuse.
func Check(d Drive, imageSize int64, cfg Config) []Verdict {
	held := placement(d, cfg)
	return append(held, checkPolicy(d, cfg, Refusal(held) == nil), checkSize(d, imageSize), checkReadOnly(d))
}

// placement runs the guards that ask what the disk holds and who uses it.
func placement(d Drive, cfg Config) []Verdict {
	guards := []string{GuardSystem, GuardCache, GuardMounted, GuardHolders}
	if !d.IsBlock() {
		return verdicts(guards, true, "virtual drive: a file, not a disk")
	}
	mounts, swaps, err := readMounts()
	var members []member
	if err == nil {
		members, err = stackOf(cfg.sysRoot(), d.Name)
	}
	if err == nil && members[0].DevNum != d.DevNum {
		err = fmt.Errorf("/dev/%s is now device %s, not %s", d.Name, members[0].DevNum, d.DevNum)
	}
	if err != nil {
		return verdicts(guards, false, "cannot tell: "+err.Error())
	}
	return []Verdict{
		checkSystem(members, mounts, swaps),
		checkCache(members, mounts, cfg.CacheDir),
		checkMounted(members, mounts),
		checkHolders(members),
	}
}

func verdicts(guards []string, ok bool, reason string) []Verdict {
	vs := make([]Verdict, len(guards))
	for i, g := range guards {
		vs[i] = Verdict{Guard: g, OK: ok, Reason: reason}
	}
	return vs
}

// systemPaths are the mount points that make a disk the system disk.
var systemPaths = []string{"/", "/boot", "/boot/efi", "/efi"}

func checkSystem(members []member, mounts []mount, swaps []string) Verdict {
	var held []string
	for _, p := range systemPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if on := matching(members, pathDevs(p, mounts)); len(on) > 0 {
			held = append(held, fmt.Sprintf("%s (on /dev/%s)", p, on[0].Name))
		}
	}
	for _, s := range swaps {
		devs := pathDevs(s, mounts) // a swap file: the device under it
		if dev := blockDevNum(s); dev != "" {
			devs = devNums{dev: true} // a swap partition
		}
		if on := matching(members, devs); len(on) > 0 {
			held = append(held, fmt.Sprintf("swap %s (on /dev/%s)", s, on[0].Name))
		}
	}
	if len(held) > 0 {
		return Verdict{Guard: GuardSystem, Reason: "system disk: holds " + strings.Join(held, ", ")}
	}
	return Verdict{Guard: GuardSystem, OK: true, Reason: "holds no system file system or swap"}
}

func checkCache(members []member, mounts []mount, cacheDir string) Verdict {
	if cacheDir == "" {
		return Verdict{Guard: GuardCache, OK: true, Reason: "no node cache configured"}
	}
	if abs, err := filepath.Abs(cacheDir); err == nil {
		cacheDir = abs
	}
	if on := matching(members, pathDevs(cacheDir, mounts)); len(on) > 0 {
		return Verdict{Guard: GuardCache, Reason: fmt.Sprintf("holds the node cache %s (on /dev/%s)", cacheDir, on[0].Name)}
	}
	return Verdict{Guard: GuardCache, OK: true, Reason: "does not hold the node cache"}
}

func checkMounted(members []member, mounts []mount) Verdict {
	var seen []string
	for _, m := range mounts {
		for _, on := range matching(members, toSet(mountDevs(m))) {
			seen = append(seen, fmt.Sprintf("/dev/%s is mounted on %s", on.Name, m.Point))
		}
	}
	if len(seen) == 0 {
		return Verdict{Guard: GuardMounted, OK: true, Reason: "nothing on it is mounted"}
	}
	return Verdict{Guard: GuardMounted, Reason: listSome(seen, 3)}
}

func toSet(devs []string) devNums {
	s := devNums{}
	for _, d := range devs {
		s[d] = true
	}
	return s
}

// listSome joins the first n items and counts the rest, so that a disk
// bind-mounted in forty places still gives a readable reason.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

func checkHolders(members []member) Verdict {
	var held []string
	for _, m := range members {
		if m.On != "" {
			held = append(held, fmt.Sprintf("%s is built on /dev/%s", m.Name, m.On))
		}
	}
	if len(held) == 0 {
		return Verdict{Guard: GuardHolders, OK: true, Reason: "no device is built on it"}
	}
	return Verdict{Guard: GuardHolders, Reason: listSome(held, 3)}
}

// checkPolicy admits by default only what a technician plugs in and pulls
// out: removable media and USB disks. Docks, internal disks and loop
// devices must be named in Allow, so that no disk of the node itself is
// written because someone mistyped a drive name. hint says how to allow
// the drive; it is false when what the disk holds or who uses it refuses
// it anyway (the system disk above all), so that no message ever suggests
// allowing such a disk.
func checkPolicy(d Drive, cfg Config, hint bool) Verdict {
	v := Verdict{Guard: GuardPolicy, OK: true}
	switch how := allowedBy(d, cfg.Allow); {
	case d.Transport == TransportVirtual:
		v.Reason = "virtual drive"
	case how != "":
		v.Reason = "allowed by " + how
	case d.Transport == TransportUSB:
		v.Reason = "usb"
	case d.Removable:
		v.Reason = "removable"
	case hint:
		v.OK = false
		v.Reason = fmt.Sprintf("%s disk, not removable: allow it by id, slot or path (--allow %s)", d.Transport, d.ID)
	default:
		v.OK = false
		v.Reason = fmt.Sprintf("%s disk, not removable", d.Transport)
	}
	return v
}

// allowedBy says which Allow entry admits d ("id loop-1a2b"), "" if none.
func allowedBy(d Drive, allow []string) string {
	for _, a := range allow {
		switch {
		case a == "":
		case a == d.ID:
			return "id " + a
		case a == d.Slot:
			return "slot " + a
		case a == d.Path:
			return "path " + a
		case strings.HasPrefix(a, "/") && samePath(a, d.Path):
			return "path " + a
		}
	}
	return ""
}

func checkSize(d Drive, imageSize int64) Verdict {
	switch {
	case imageSize <= 0:
		return Verdict{Guard: GuardSize, OK: true, Reason: "no image size to compare"}
	case d.Size < imageSize:
		return Verdict{Guard: GuardSize, Reason: fmt.Sprintf("drive is %s (%d bytes), the image needs %s (%d bytes)",
			humanize.IBytes(uint64(d.Size)), d.Size, humanize.IBytes(uint64(imageSize)), imageSize)}
	}
	return Verdict{Guard: GuardSize, OK: true, Reason: fmt.Sprintf("%s drive for a %s image",
		humanize.IBytes(uint64(d.Size)), humanize.IBytes(uint64(imageSize)))}
}

func checkReadOnly(d Drive) Verdict {
	if d.ReadOnly {
		return Verdict{Guard: GuardReadOnly, Reason: "read-only (write-protect switch, or the kernel set it read-only)"}
	}
	return Verdict{Guard: GuardReadOnly, OK: true, Reason: "writable"}
}

// RefusedError lists the guards that refused a drive.
type RefusedError struct {
	Failed []Verdict
}

func (e *RefusedError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, v := range e.Failed {
		parts[i] = v.Guard + ": " + v.Reason
	}
	return "refused: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Refusal is nil when every verdict passed, else a *RefusedError naming
// the guards that did not.
func Refusal(vs []Verdict) error {
	var failed []Verdict
	for _, v := range vs {
		if !v.OK {
			failed = append(failed, v)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &RefusedError{Failed: failed}
}
