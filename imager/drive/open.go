package drive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// Mismatch is one part of a drive's identity that is not what was planned.
type Mismatch struct {
	Field string `json:"field"`
	Got   string `json:"got"`
	Want  string `json:"want"`
}

// IdentityError says how the device at a planned path differs from the
// drive the write was planned for.
type IdentityError struct {
	Path       string
	Mismatches []Mismatch
}

func (e *IdentityError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = fmt.Sprintf("%s is %s, want %s", m.Field, orNone(m.Got), orNone(m.Want))
	}
	return fmt.Sprintf("%s is not the planned drive: %s", e.Path, strings.Join(parts, "; "))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Unwrap makes errors.Is(err, ErrIdentityChanged) true.
func (e *IdentityError) Unwrap() error { return ErrIdentityChanged }

// Reverify re-reads the drive at planned.Path just before it is opened
// and returns it as it is now. A drive swapped for another since it was
// planned (other serial, model, WWN, size, or loop backing file) gives an
// *IdentityError; a drive that is gone gives ErrNotFound. Open the drive
// Reverify returns, not the planned one: its device number is current.
//
// It reads the drive as Discover does, udev database included. udevd
// writes a new disk's entry a moment after the kernel shows the disk, so
// a drive planned before then may now have a serial, WWN or model from
// udev that it was planned without: when sysfs alone still reads the
// planned drive, it is that drive, and Reverify returns it read without
// the database, as it was planned (the id stays the one it was planned
// under).
func Reverify(planned Drive, cfg Config) (Drive, error) {
	now, err := reread(planned, cfg, cfg.udevDir())
	if err != nil {
		return Drive{}, err
	}
	ms := mismatches(now, planned)
	if len(ms) > 0 && planned.IsBlock() && cfg.udevDir() != "" {
		if bare, err := reread(planned, cfg, ""); err == nil && len(mismatches(bare, planned)) == 0 {
			return bare, nil
		}
	}
	if len(ms) > 0 {
		return now, &IdentityError{Path: planned.Path, Mismatches: ms}
	}
	return now, nil
}

// reread reads the drive at planned.Path again, with the udev database in
// udevDir (none if "").
func reread(planned Drive, cfg Config, udevDir string) (Drive, error) {
	var drives []Drive
	var err error
	if planned.IsBlock() {
		drives, err = discover(Config{SysRoot: cfg.SysRoot, SlotLabels: cfg.SlotLabels}, udevDir)
	} else {
		drives, err = discoverVirtual(filepath.Dir(planned.Path))
	}
	if err != nil {
		return Drive{}, fmt.Errorf("reverify %s: %w", planned.Path, err)
	}
	i := slices.IndexFunc(drives, func(d Drive) bool { return d.Path == planned.Path })
	if i < 0 {
		return Drive{}, fmt.Errorf("reverify %s (%s): gone: %w", planned.Path, planned.ID, ErrNotFound)
	}
	now := drives[i]
	now.SlotLabel = labelOf(now, cfg)
	return now, nil
}

func mismatches(got, want Drive) []Mismatch {
	var ms []Mismatch
	add := func(field, g, w string) {
		if g != w {
			ms = append(ms, Mismatch{Field: field, Got: g, Want: w})
		}
	}
	add("serial", got.Serial, want.Serial)
	add("model", got.Model, want.Model)
	add("wwn", got.WWN, want.WWN)
	add("size", sizeString(got.Size), sizeString(want.Size))
	add("backing file", got.BackingFile, want.BackingFile)
	if got.Transport == TransportLoop {
		add("id", got.ID, want.ID) // the backing file's inode is only in the id
	}
	return ms
}

func sizeString(n int64) string {
	return fmt.Sprintf("%s (%d bytes)", humanize.IBytes(uint64(max(n, 0))), n)
}

// OpenExclusive opens d for writing so that nothing else can use it
// meanwhile. A block device is opened O_EXCL, which the kernel refuses
// (ErrBusy) while the disk or a partition is mounted, held by
// device-mapper or md, or open O_EXCL elsewhere; it is then checked to be
// the device d describes. A virtual drive is locked with flock. direct
// tells whether the file is open with O_DIRECT: the kernel refuses it on
// some file systems (EINVAL), and then the file is opened without it.
func OpenExclusive(d Drive) (f *os.File, direct bool, err error) {
	return openExclusive(d, os.O_RDWR)
}

// CheckExclusive is the exclusive guard without the write: it opens d as
// OpenExclusive does, but read-only, and closes it. A dry run uses it.
func CheckExclusive(d Drive) error {
	f, _, err := openExclusive(d, os.O_RDONLY)
	if err != nil {
		return err
	}
	return f.Close()
}

func openExclusive(d Drive, flag int) (f *os.File, direct bool, err error) {
	if !d.IsBlock() {
		return openVirtual(d, flag, true)
	}
	f, direct, err = openDirect(d.Path, flag|unix.O_EXCL)
	if errors.Is(err, unix.EBUSY) {
		return nil, false, fmt.Errorf("open %s exclusively (mounted, held by device-mapper or md, or open in another writer): %w", d.Path, ErrBusy)
	} else if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", d.Path, err)
	}
	if err := sameBlock(f, d); err != nil {
		f.Close()
		return nil, false, err
	}
	return f, direct, nil
}

// OpenRead opens d to read back what was written, with O_DIRECT where the
// kernel allows it so that reads come from the device, not cached pages.
// Without O_DIRECT it asks the kernel to drop the file's cached pages.
func OpenRead(d Drive) (f *os.File, direct bool, err error) {
	if !d.IsBlock() {
		return openVirtual(d, os.O_RDONLY, false)
	}
	f, direct, err = openDirect(d.Path, os.O_RDONLY)
	if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", d.Path, err)
	}
	if err := sameBlock(f, d); err != nil {
		f.Close()
		return nil, false, err
	}
	if !direct {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) // best effort
	}
	return f, direct, nil
}

// openDirect opens path with O_DIRECT, or without it when the kernel
// refuses O_DIRECT there.
func openDirect(path string, flag int) (*os.File, bool, error) {
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flag, 0)
	return f, false, err
}

// sameBlock checks that an opened device is the one d describes: the
// /dev node could name another disk since d was read.
func sameBlock(f *os.File, d Drive) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return &IdentityError{Path: d.Path, Mismatches: []Mismatch{{Field: "kind", Got: "not a block device", Want: "block device"}}}
	}
	size, err := f.Seek(0, io.SeekEnd) // a block device's end is its size
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fmt.Errorf("size of %s: %w", d.Path, err)
	}
	var ms []Mismatch
	if got := devString(st.Rdev); got != d.DevNum {
		ms = append(ms, Mismatch{Field: "device number", Got: got, Want: d.DevNum})
	}
	if size != d.Size {
		ms = append(ms, Mismatch{Field: "size", Got: sizeString(size), Want: sizeString(d.Size)})
	}
	if len(ms) > 0 {
		return &IdentityError{Path: d.Path, Mismatches: ms}
	}
	return nil
}

// openVirtual opens a virtual drive's file. O_NOFOLLOW and the regular
// file check keep a symlink to a real disk from passing as a virtual
// drive; lock takes an flock so two writers cannot share it.
func openVirtual(d Drive, flag int, lock bool) (*os.File, bool, error) {
	f, direct, err := openDirect(d.Path, flag|unix.O_NOFOLLOW)
	if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", d.Path, err)
	}
	fail := func(err error) (*os.File, bool, error) { f.Close(); return nil, false, err }
	if err := sameVirtual(f, d); err != nil {
		return fail(err)
	}
	if lock {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
			return fail(fmt.Errorf("lock %s (open in another writer): %w", d.Path, ErrBusy))
		} else if err != nil {
			return fail(fmt.Errorf("lock %s: %w", d.Path, err))
		}
	}
	if !direct {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) // best effort
	}
	return f, direct, nil
}

// sameVirtual checks that an opened virtual drive is the one d describes:
// a regular file of d's size.
func sameVirtual(f *os.File, d Drive) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", d.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return &IdentityError{Path: d.Path, Mismatches: []Mismatch{{Field: "kind", Got: fi.Mode().Type().String(), Want: "regular file"}}}
	}
	if fi.Size() != d.Size {
		return &IdentityError{Path: d.Path, Mismatches: []Mismatch{{Field: "size", Got: sizeString(fi.Size()), Want: sizeString(d.Size)}}}
	}
	return nil
}

// OpenSource opens d read-only to read it whole (a netbooted device
// capturing its disk): O_RDONLY, never for writing, and without O_DIRECT
// so that any buffer reads it. The file opened is checked to be the drive
// d describes.
func OpenSource(d Drive) (*os.File, error) {
	flag, same := os.O_RDONLY, sameBlock
	if !d.IsBlock() {
		flag, same = flag|unix.O_NOFOLLOW, sameVirtual
	}
	f, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.Path, err)
	}
	if err := same(f, d); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
