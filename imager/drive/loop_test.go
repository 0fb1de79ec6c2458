package drive

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
	"unsafe"

	"golang.org/x/sys/unix"
)

// requireRoot skips tests that need loop devices and mounts when not run
// as root. CI runs as root, so there they run.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: loop devices, partitions and mounts need root (CI runs these as root)")
	}
}

// command runs a tool the test needs and fails the test with its output.
func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDev is a loop device on a sparse file, detached when the test ends.
type loopDev struct {
	Path, Backing string
	detach        sync.Once
}

// newLoop attaches a sparse file of size bytes; args go to losetup
// (--sector-size 4096, --read-only).
func newLoop(t *testing.T, size int64, args ...string) *loopDev {
	t.Helper()
	backing := filepath.Join(t.TempDir(), "disk.img")
	if err := os.Truncate(makeFile(t, backing), size); err != nil {
		t.Fatal(err)
	}
	return attachLoop(t, backing, args...)
}

func makeFile(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func attachLoop(t *testing.T, backing string, args ...string) *loopDev {
	t.Helper()
	l := &loopDev{Backing: backing}
	l.Path = command(t, "losetup", append(append([]string{"--find", "--show"}, args...), backing)...)
	t.Cleanup(func() { l.Detach(t) })
	return l
}

// Detach detaches the loop device once; cleanup calls it again harmlessly.
// It waits until sysfs shows the file gone from the device: while another
// process (udev's blkid, another test package) has the device open, the
// kernel defers the detach to the last close.
func (l *loopDev) Detach(t *testing.T) {
	t.Helper()
	l.detach.Do(func() {
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
func (l *loopDev) bound() bool {
	return attr(filepath.Join("/sys/block", filepath.Base(l.Path)), "loop/backing_file") == l.Backing
}

// addPartition adds partition 1 at [start, start+length) with the BLKPG
// ioctl, which works on every kernel: some (this one) are built without
// any partition table parser, so losetup -P finds nothing to scan. The
// partition is deleted before the loop device is detached, since a
// partition added this way outlives the detach otherwise.
func addPartition(t *testing.T, l *loopDev, start, length int64) string {
	t.Helper()
	blkpg(t, l.Path, unix.BLKPG_ADD_PARTITION, start, length)
	t.Cleanup(func() { blkpg(t, l.Path, unix.BLKPG_DEL_PARTITION, 0, 0) })
	return l.Path + "p1"
}

func blkpg(t *testing.T, dev string, op int32, start, length int64) {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	part := unix.BlkpgPartition{Start: start, Length: length, Pno: 1}
	arg := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		t.Fatalf("BLKPG op %d on %s: %v", op, dev, errno)
	}
}

// mountExt4 makes an ext4 file system on dev and mounts it read-write on
// a fresh folder, unmounted when the test ends. Lazy initialisation is
// off so that the kernel does not write to the device in the background
// while a test checks that nothing changed it.
func mountExt4(t *testing.T, dev string) string {
	t.Helper()
	command(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev)
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	unix.Sync()
	return dir
}

// sha256Device hashes a device's bytes with O_DIRECT, so the hash is of
// the device and not of cached pages.
func sha256Device(t *testing.T, path string) string {
	t.Helper()
	unix.Sync() // what a mounted file system holds dirty is part of "before"
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

// discovered finds the drive at path, failing the test if there is none.
func discovered(t *testing.T, cfg Config, path string) Drive {
	t.Helper()
	drives, err := Discover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Find(drives, path)
	if err != nil {
		t.Fatalf("Find(%s) in %v: %v", path, names(drives), err)
	}
	return d
}

func names(drives []Drive) []string {
	var out []string
	for _, d := range drives {
		out = append(out, d.Path)
	}
	return out
}

// verdict returns what guard said in vs.
func verdict(t *testing.T, vs []Verdict, guard string) Verdict {
	t.Helper()
	for _, v := range vs {
		if v.Guard == guard {
			return v
		}
	}
	t.Fatalf("no verdict from guard %s in %+v", guard, vs)
	return Verdict{}
}

func wantRefused(t *testing.T, vs []Verdict, guard, reason string) {
	t.Helper()
	if v := verdict(t, vs, guard); v.OK || !strings.Contains(v.Reason, reason) {
		t.Errorf("guard %s = %+v, want refused with %q", guard, v, reason)
	}
}

func wantPassed(t *testing.T, vs []Verdict, guard string) {
	t.Helper()
	if v := verdict(t, vs, guard); !v.OK {
		t.Errorf("guard %s = %+v, want passed", guard, v)
	}
}
