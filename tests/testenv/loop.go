package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireRoot skips a test that needs loop devices, device nodes or mounts
// when it does not run as root, saying so; under CI (CI set) it fails
// instead, so a missing root step cannot hide behind a skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		// In CI a skip would hide a missing step: these tests must run there.
		if os.Getenv("CI") != "" {
			t.Fatal("not root: loop devices, device nodes and mounts need root, and CI (CI is set) must run these tests: run scripts/test.sh as root")
		}
		t.Skip("not root: loop devices and mounts need root (CI runs these as root)")
	}
}

// Command runs a tool a test needs and fails the test with its output.
func Command(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Loop is a loop device on a file: a real block device for tests.
type Loop struct {
	Path    string // /dev/loopN
	Backing string
	once    sync.Once
}

// NewLoop attaches a sparse file of size bytes as a loop device, detached
// when the test ends; args go to losetup (--sector-size 4096, --read-only).
func NewLoop(t testing.TB, size int64, args ...string) *Loop {
	t.Helper()
	backing := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(backing)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return AttachLoop(t, backing, args...)
}

// AttachLoop attaches an existing file as a loop device, detached when the
// test ends.
func AttachLoop(t testing.TB, backing string, args ...string) *Loop {
	t.Helper()
	l := &Loop{Backing: backing}
	l.Path = Command(t, "losetup", append(append([]string{"--find", "--show"}, args...), backing)...)
	t.Cleanup(func() { l.Detach(t) })
	return l
}

// Detach detaches the loop device once; later calls do nothing. It waits
// until sysfs shows the file gone from the device: while anything else has
// the device open, the kernel defers the detach to the last close.
func (l *Loop) Detach(t testing.TB) {
	t.Helper()
	l.once.Do(func() {
		if out, err := exec.Command("losetup", "-d", l.Path).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", l.Path, err, out)
			return
		}
		for deadline := time.Now().Add(5 * time.Second); l.bound(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%s still backed by %s 5s after losetup -d", l.Path, l.Backing)
				return
			}
		}
	})
}

// bound reports whether the loop device still has this test's file.
func (l *Loop) bound() bool {
	b, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(l.Path), "loop", "backing_file"))
	return strings.TrimSpace(string(b)) == l.Backing
}

// MountExt4 makes an ext4 file system on dev and mounts it (noatime) on a
// fresh folder, unmounted when the test ends. Lazy initialisation is off
// so that the kernel does not write to the device in the background while
// a test checks that nothing changed it.
func MountExt4(t testing.TB, dev string) string {
	t.Helper()
	Command(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev)
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOATIME, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, dir, err)
	}
	t.Cleanup(func() { Unmount(t, dir) })
	unix.Sync()
	return dir
}

// DeviceSHA256 hashes a device's bytes read with O_DIRECT, so the hash is
// of the device and not of cached pages. It syncs first: what a mounted
// file system holds dirty belongs to the device's state.
func DeviceSHA256(t testing.TB, path string) string {
	t.Helper()
	unix.Sync()
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // page-aligned
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	h := sha256.New()
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hex SHA-256 of the first n bytes of path (all if n < 0),
// computed with nothing of imagefarm's.
func SHA256(t testing.TB, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RangeSHA256 is the hex SHA-256 of size bytes of path from offset off,
// computed with nothing of imagefarm's: a partition's bytes on a disk.
func RangeSHA256(t testing.TB, path string, off, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if n, err := io.Copy(h, io.NewSectionReader(f, off, size)); err != nil || n != size {
		t.Fatalf("read %s bytes %d+%d: %d bytes, %v", path, off, size, n, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
