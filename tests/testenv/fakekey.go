package testenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// FakeKey is a counterfeit USB key made of real parts: a loop device over
// a file that a small FUSE file system in this process serves. The file
// advertises Size bytes but only Real are stored: offset X is stored at X
// mod Real, as the controller of a key that wraps around does. The kernel
// sees a block device of Size bytes; nothing of imagefarm's is faked.
type FakeKey struct {
	*Loop
	Size, Real int64
}

// NewFakeKey mounts the FUSE file system, attaches its file as a loop
// device and undoes both when the test ends.
func NewFakeKey(t testing.TB, size, real int64) *FakeKey {
	t.Helper()
	store, err := os.Create(filepath.Join(t.TempDir(), "flash"))
	if err == nil {
		err = store.Truncate(real)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dir := t.TempDir()
	// A plain blocking descriptor: the runtime's poller does not take
	// /dev/fuse. The unmount ends the read that serve waits in.
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Mount("imagefarm-fakekey", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd))
	if err != nil {
		unix.Close(fd)
		t.Fatalf("mount fuse on %s: %v", dir, err)
	}
	fs := &fakeFS{fd: fd, store: store, size: size, real: real}
	var wg sync.WaitGroup
	wg.Go(fs.serve)
	t.Cleanup(func() { // after the loop device is detached
		if err := unix.Unmount(dir, 0); err != nil {
			// Still open: detach it lazily and leave serve to answer
			// whoever holds it, rather than wait for ever.
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
			return
		}
		wg.Wait()
		unix.Close(fd)
		if fs.err != nil {
			t.Errorf("fake key's file system: %v", fs.err)
		}
	})
	return &FakeKey{Loop: AttachLoop(t, filepath.Join(dir, fakeFile)), Size: size, Real: real}
}

const fakeFile = "disk"

// FUSE protocol (linux/fuse.h), the little of it a loop device needs.
const (
	fuseLookup      = 1
	fuseForget      = 2
	fuseGetattr     = 3
	fuseOpen        = 14
	fuseRead        = 15
	fuseWrite       = 16
	fuseRelease     = 18
	fuseFsync       = 20
	fuseFlush       = 25
	fuseInit        = 26
	fuseInterrupt   = 36
	fuseBatchForget = 42

	fuseRootID    = 1
	fuseFileID    = 2
	fuseInHeader  = 40
	fuseMaxWrite  = 128 << 10
	fopenDirectIO = 1 // no page cache: every read and write reaches serve
)

// fakeFS serves one file, fakeFile, of size bytes over store's real.
type fakeFS struct {
	fd         int // /dev/fuse
	store      *os.File
	size, real int64
	err        error // why serving stopped, if not the unmount
}

// serve answers requests one at a time until the file system is unmounted.
func (fs *fakeFS) serve() {
	buf := make([]byte, fuseMaxWrite+64<<10)
	for {
		n, err := unix.Read(fs.fd, buf)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT): // ENOENT: a request interrupted meanwhile
			continue
		case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ECONNABORTED): // unmounted (the kernel may mark an unmounted connection aborted)
			return
		case err != nil:
			fs.err = err
			return
		}
		req := buf[:n]
		op, unique, node := binary.LittleEndian.Uint32(req[4:]), binary.LittleEndian.Uint64(req[8:]), binary.LittleEndian.Uint64(req[16:])
		if op == fuseForget || op == fuseBatchForget || op == fuseInterrupt {
			continue // no reply
		}
		out, errno := fs.handle(op, node, req[fuseInHeader:])
		if errno != 0 {
			out = nil // an error reply is the header alone
		}
		hdr := make([]byte, 16, 16+len(out))
		binary.LittleEndian.PutUint32(hdr, uint32(16+len(out)))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(-int32(errno)))
		binary.LittleEndian.PutUint64(hdr[8:], unique)
		if _, err := unix.Write(fs.fd, append(hdr, out...)); err != nil && !errors.Is(err, unix.ENOENT) {
			fs.err = err
			return
		}
	}
}

func (fs *fakeFS) handle(op uint32, node uint64, in []byte) ([]byte, unix.Errno) {
	le := binary.LittleEndian
	switch op {
	case fuseInit: // 7.31, no optional features
		out := make([]byte, 64)
		le.PutUint32(out, 7)
		le.PutUint32(out[4:], 31)
		le.PutUint32(out[8:], le.Uint32(in[8:])) // max_readahead
		le.PutUint16(out[16:], 16)               // max_background
		le.PutUint16(out[18:], 12)               // congestion_threshold
		le.PutUint32(out[20:], fuseMaxWrite)
		le.PutUint32(out[24:], 1) // time_gran
		return out, 0
	case fuseLookup:
		if node != fuseRootID || string(bytes.TrimRight(in, "\x00")) != fakeFile {
			return nil, unix.ENOENT
		}
		out := make([]byte, 40, 128) // nodeid, generation, entry and attr validity
		le.PutUint64(out, fuseFileID)
		return append(out, fs.attr(fuseFileID)...), 0
	case fuseGetattr:
		return append(make([]byte, 16), fs.attr(node)...), 0
	case fuseOpen:
		out := make([]byte, 16)
		le.PutUint32(out[8:], fopenDirectIO)
		return out, 0
	case fuseRead:
		off, n := int64(le.Uint64(in[8:])), int64(le.Uint32(in[16:]))
		out := make([]byte, max(min(n, fs.size-off), 0))
		return out, fs.io(out, off, fs.store.ReadAt)
	case fuseWrite:
		off, n := int64(le.Uint64(in[8:])), int64(le.Uint32(in[16:]))
		if off+n > fs.size {
			return nil, unix.ENOSPC
		}
		out := make([]byte, 8)
		le.PutUint32(out, uint32(n))
		return out, fs.io(in[40:40+n], off, fs.store.WriteAt)
	case fuseRelease, fuseFlush, fuseFsync:
		return nil, 0
	}
	return nil, unix.ENOSYS
}

// io moves p at the advertised offset off, stored at off mod real.
func (fs *fakeFS) io(p []byte, off int64, rw func([]byte, int64) (int, error)) unix.Errno {
	for n := int64(0); n < int64(len(p)); {
		at := (off + n) % fs.real
		m := min(int64(len(p))-n, fs.real-at)
		if _, err := rw(p[n:n+m], at); err != nil {
			return unix.EIO
		}
		n += m
	}
	return 0
}

// attr is a node's fuse_attr: the root folder or the advertised file.
func (fs *fakeFS) attr(node uint64) []byte {
	le := binary.LittleEndian
	a := make([]byte, 88)
	le.PutUint64(a, node) // ino
	mode, nlink := uint32(unix.S_IFDIR|0o755), uint32(2)
	if node == fuseFileID {
		le.PutUint64(a[8:], uint64(fs.size))
		le.PutUint64(a[16:], uint64(fs.size/512)) // blocks
		mode, nlink = unix.S_IFREG|0o644, 1
	}
	le.PutUint32(a[60:], mode)
	le.PutUint32(a[64:], nlink)
	le.PutUint32(a[80:], 4096) // blksize
	return a
}
