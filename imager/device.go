package imager

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// ErrZeroUnsupported is returned by Device.Zero when the device cannot zero
// a range deterministically; the pipeline then writes zeros instead.
var ErrZeroUnsupported = errors.New("imager: device cannot zero ranges")

// Device is an opened drive as the write pipeline uses it. FileDevice is the
// real one; tests wrap it to inject I/O errors.
type Device interface {
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	// Sync makes written data durable and, for a device not opened with
	// O_DIRECT, drops it from the page cache so read-back comes from the
	// device where the kernel allows.
	Sync() error
	// Zero sets [off, off+n) to zeros without sending them, where the
	// device can (WRITE ZEROES on a block device, a hole in a file).
	Zero(off, n int64) error
	// Direct reports whether reads and writes bypass the page cache.
	Direct() bool
	// Size is the device's size now: the kernel sets a pulled disk's to 0.
	Size() (int64, error)
	Close() error
}

// FileDevice is a block device or a virtual drive (a file), ideally opened
// with O_DIRECT. Writes whose offset or length is not block aligned (the
// tail of an image whose size is not a multiple of the block size) clear
// O_DIRECT for that one write.
type FileDevice struct {
	f      *os.File
	direct bool
}

// NewFileDevice wraps f; direct says whether f was opened with O_DIRECT.
func NewFileDevice(f *os.File, direct bool) *FileDevice {
	return &FileDevice{f: f, direct: direct}
}

func (d *FileDevice) Direct() bool { return d.direct }
func (d *FileDevice) Close() error { return d.f.Close() }

// Size implements Device: a block device's end is its size, read from the
// open device, so it answers for a disk whose /dev node is gone. A
// virtual drive whose file was deleted has been pulled: its size is 0.
func (d *FileDevice) Size() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.f.Fd()), &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 0 {
		return 0, nil
	}
	return d.f.Seek(0, io.SeekEnd)
}

// aligned reports whether an O_DIRECT transfer of p at off is allowed.
func aligned(p []byte, off int64) bool {
	return off%catalog.Alignment == 0 && len(p)%catalog.Alignment == 0 && catalog.IsAligned(p)
}

// WriteAt implements Device.
func (d *FileDevice) WriteAt(p []byte, off int64) (int, error) {
	if !d.direct || aligned(p, off) {
		return d.f.WriteAt(p, off)
	}
	if err := d.setDirect(false); err != nil {
		return 0, err
	}
	n, err := d.f.WriteAt(p, off)
	if serr := d.setDirect(true); err == nil {
		err = serr
	}
	return n, err
}

// ReadAt implements Device. With O_DIRECT, p must be aligned and its
// capacity must allow rounding its length up to the alignment (the bytes
// past len(p) are scratch): read-back never falls back to the page cache.
// Without O_DIRECT, the range's clean cached pages are dropped just before
// it is read, so that pages read into the cache since Sync (by blkid, or
// anyone) are not taken for the device's bytes.
func (d *FileDevice) ReadAt(p []byte, off int64) (int, error) {
	if !d.direct {
		_ = unix.Fadvise(int(d.f.Fd()), off, int64(len(p)), unix.FADV_DONTNEED) // best effort: a file system may keep its pages
		return d.f.ReadAt(p, off)
	}
	full := p[:min(cap(p), roundUp(len(p)))]
	if !aligned(full, off) {
		return 0, fmt.Errorf("direct read of %d bytes at %d: buffer or offset not aligned", len(p), off)
	}
	n, err := d.f.ReadAt(full, off)
	if n >= len(p) {
		return len(p), nil
	}
	return n, err
}

func roundUp(n int) int { return (n + catalog.Alignment - 1) / catalog.Alignment * catalog.Alignment }

// Sync implements Device.
func (d *FileDevice) Sync() error {
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	if !d.direct {
		unix.Fadvise(int(d.f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	return nil
}

// Zero implements Device with fallocate(PUNCH_HOLE): on a file it punches a
// hole; on a block device the kernel turns it into WRITE ZEROES (unmapping
// allowed) and, unlike BLKZEROOUT, refuses rather than falling back to
// writing zero pages itself when the device cannot do it, so the pipeline
// can write zeros its own, faster way.
func (d *FileDevice) Zero(off, n int64) error {
	err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %v", ErrZeroUnsupported, err)
	}
	return err
}

func (d *FileDevice) setDirect(on bool) error {
	flags, err := unix.FcntlInt(d.f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(d.f.Fd(), unix.F_SETFL, flags)
	return err
}
