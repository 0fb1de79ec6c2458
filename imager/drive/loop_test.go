package drive

import (
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/imagefarm/imagefarm/tests/testenv"
	"golang.org/x/sys/unix"
)

func makeFile(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// addPartition adds partition 1 at [start, start+length) with the BLKPG
// ioctl, which works on every kernel: some (this one) are built without
// any partition table parser, so losetup -P finds nothing to scan. The
// partition is deleted before the loop device is detached, since a
// partition added this way outlives the detach otherwise.
func addPartition(t *testing.T, l *testenv.Loop, start, length int64) string {
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
