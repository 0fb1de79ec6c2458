package drive

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	DevNum string // MAJ:MIN as the kernel reports it
	Point  string
	FSType string
	Source string
}

// parseMountinfo reads the mountinfo format (proc(5)): ID, parent ID,
// MAJ:MIN, root, mount point, options, optional fields, "-", fs type,
// source, super options. Paths have spaces and such escaped in octal; a
// source may be empty.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var mounts []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), " ") // single spaces; spaces in fields are escaped
		if sc.Text() == "" {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		mounts = append(mounts, mount{DevNum: f[2], Point: unescape(f[4]), FSType: f[sep+1], Source: unescape(f[sep+2])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return mounts, nil
}

// unescape undoes the kernel's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseSwaps reads the file names of /proc/swaps (after its header line).
func parseSwaps(r io.Reader) []string {
	var names []string
	sc := bufio.NewScanner(r)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 2 {
			continue
		}
		names = append(names, strings.TrimSuffix(unescape(f[0]), "\\040(deleted)"))
	}
	return names
}

// devNums is a set of "MAJ:MIN".
type devNums map[string]bool

func devString(dev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)) }

// blockDevNum is the device number of a block special file, "" if path is
// not one.
func blockDevNum(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return ""
	}
	return devString(st.Rdev)
}

// mountDevs is every device number a mount stands for: the one in
// mountinfo, and the source's when the source is a block device, because
// btrfs (and others) report an anonymous 0:N in mountinfo.
func mountDevs(m mount) []string {
	devs := []string{m.DevNum}
	if strings.HasPrefix(m.Source, "/") {
		if d := blockDevNum(m.Source); d != "" && d != m.DevNum {
			devs = append(devs, d)
		}
	}
	return devs
}

// pathDevs is the set of devices holding path: its file system's device
// (from stat) and that of the mount it lives in. A path that does not
// exist yet is looked up through its nearest existing parent, since a
// cache folder made later lands on the same device.
func pathDevs(path string, mounts []mount) devNums {
	p := filepath.Clean(path)
	var st unix.Stat_t
	for unix.Stat(p, &st) != nil {
		if p == "/" || p == "." {
			return nil
		}
		p = filepath.Dir(p)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	devs := devNums{devString(st.Dev): true}
	if m, ok := mountOf(p, mounts); ok {
		for _, d := range mountDevs(m) {
			devs[d] = true
		}
	}
	return devs
}

// mountOf finds the mount a path is in: the longest mount point above it,
// the last one listed when mounts are stacked.
func mountOf(path string, mounts []mount) (mount, bool) {
	best, found := mount{}, false
	for _, m := range mounts {
		if within(path, m.Point) && (!found || len(m.Point) >= len(best.Point)) {
			best, found = m, true
		}
	}
	return best, found
}

func within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// readMounts reads this process's mount table and swap list.
func readMounts() ([]mount, []string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	mounts, err := parseMountinfo(f)
	if err != nil {
		return nil, nil, err
	}
	var swaps []string
	if s, err := os.Open("/proc/swaps"); err == nil { // absent without CONFIG_SWAP
		swaps = parseSwaps(s)
		s.Close()
	}
	return mounts, swaps, nil
}
