package deployenv

import (
	"fmt"
	"io"
	"maps"
	"path"
	"slices"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// initramfs is the deploy environment's root file system as it is being
// put together: entries by path. Its bytes depend only on the paths,
// modes and contents of the entries, never on when or where it was
// built: entries are written in path order (each folder before what it
// holds), numbered in that order, with every time, owner and device
// number zero.
type initramfs struct {
	recs map[string]cpio.Record
}

func newInitramfs() *initramfs { return &initramfs{recs: map[string]cpio.Record{}} }

// dir adds the folder name (and its parents) with mode 0755.
func (a *initramfs) dir(name string) {
	for ; name != "." && name != "/"; name = path.Dir(name) {
		if _, ok := a.recs[name]; ok {
			return
		}
		a.recs[name] = cpio.Directory(name, 0o755)
	}
}

// file adds a regular file with the given permissions, and its folders.
func (a *initramfs) file(name string, data []byte, perm uint64) {
	a.add(cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
}

// add adds a record, and its folders.
func (a *initramfs) add(r cpio.Record) {
	a.dir(path.Dir(r.Name))
	a.recs[r.Name] = r
}

// write writes the archive, zstd-compressed (the kernel unpacks zstd
// initramfs images; Debian's kernel has CONFIG_RD_ZSTD), to w.
func (a *initramfs) write(w io.Writer) error {
	// One encoder goroutine: the bytes of a frame then depend only on the
	// input and the level.
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	rw := cpio.Newc.Writer(zw)
	for i, name := range slices.Sorted(maps.Keys(a.recs)) {
		r := a.recs[name]
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := rw.WriteRecord(cpio.MakeReproducible(r)); err != nil {
			zw.Close()
			return fmt.Errorf("initramfs: %s: %w", name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		zw.Close()
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
