package drive

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Find picks the drive that s names: an id first, then a path (device
// path, virtual drive file, or a /dev/disk/by-* symlink resolved), then a
// kernel name or a slot.
func Find(drives []Drive, s string) (Drive, error) {
	resolved := s
	if strings.ContainsRune(s, '/') { // a path, maybe relative or a symlink
		if r, err := filepath.Abs(s); err == nil {
			resolved = r
		}
		if r, err := filepath.EvalSymlinks(resolved); err == nil {
			resolved = r
		}
	}
	tiers := []func(Drive) bool{
		func(d Drive) bool { return d.ID == s },
		func(d Drive) bool { return d.Path == s || d.Path == resolved || samePath(d.Path, resolved) },
		func(d Drive) bool { return d.Name == s || (d.Slot != "" && d.Slot == s) },
	}
	for _, match := range tiers {
		var found []Drive
		for _, d := range drives {
			if match(d) {
				found = append(found, d)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			continue
		}
		return Drive{}, fmt.Errorf("drive %q is ambiguous: it names %s and %s", s, found[0].Path, found[1].Path)
	}
	return Drive{}, fmt.Errorf("find drive %q: %w", s, ErrNotFound)
}

// samePath compares paths after resolving symlinks, so that a virtual
// drive named through a symlinked folder is still found.
func samePath(a, b string) bool {
	ra, err := filepath.EvalSymlinks(a)
	return err == nil && ra == b
}

var partRe = regexp.MustCompile(`-part\d+$`)

// byPathSlots maps kernel names to their /dev/disk/by-path names where udev
// made them. udev makes several names for one USB disk (usb- and usbv2-);
// the shortest is the classic one.
func byPathSlots(cfg Config) map[string]string {
	if !cfg.realSys() {
		return nil
	}
	const dir = "/dev/disk/by-path"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // no udev: slots come from sysfs paths
	}
	slots := map[string]string{}
	for _, e := range ents {
		if partRe.MatchString(e.Name()) {
			continue
		}
		target, err := filepath.EvalSymlinks(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		name := filepath.Base(target)
		if old, ok := slots[name]; !ok || len(e.Name()) < len(old) || (len(e.Name()) == len(old) && e.Name() < old) {
			slots[name] = e.Name()
		}
	}
	return slots
}
