package drive

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
	"golang.org/x/sys/unix"
)

// TestMountedPartitionRefused: a disk with a mounted partition is refused
// by name, cannot be opened exclusively, and none of it changes.
func TestMountedPartitionRefused(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 64<<20, "--partscan")
	part := addPartition(t, l, 1<<20, 32<<20)
	mnt := testenv.MountExt4(t, part)
	before := testenv.DeviceSHA256(t, l.Path)

	d := discovered(t, Config{}, l.Path)
	vs := Check(d, 1<<20, Config{Allow: []string{d.ID}})
	wantRefused(t, vs, GuardMounted, part+" is mounted on "+mnt)
	for _, g := range []string{GuardSystem, GuardCache, GuardHolders, GuardPolicy, GuardSize, GuardReadOnly} {
		wantPassed(t, vs, g)
	}
	err := Refusal(vs)
	var refused *RefusedError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &refused) || len(refused.Failed) != 1 || !strings.Contains(err.Error(), "mounted: "+part) {
		t.Errorf("Refusal() = %v, want ErrRefused naming the mount", err)
	}
	if _, err := Reverify(d, Config{}); err != nil {
		t.Errorf("Reverify() = %v, want the same drive", err)
	}
	if f, _, err := OpenExclusive(d); !errors.Is(err, ErrBusy) {
		if f != nil {
			f.Close()
		}
		t.Errorf("OpenExclusive() of a disk with a mounted partition = %v, want ErrBusy", err)
	}
	if after := testenv.DeviceSHA256(t, l.Path); after != before {
		t.Errorf("device bytes changed: sha256 %s, want %s", after, before)
	}
}

// TestCacheDeviceRefused: the device holding the node cache is refused,
// also when the cache folder is not made yet; another device is not.
func TestCacheDeviceRefused(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 32<<20)
	mnt := testenv.MountExt4(t, l.Path)
	cacheDir := filepath.Join(mnt, "cache")
	if err := os.Mkdir(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := testenv.NewLoop(t, 32<<20)
	before := testenv.DeviceSHA256(t, l.Path) // after the test's own writes to the file system

	for _, dir := range []string{cacheDir, filepath.Join(cacheDir, "not", "made", "yet")} {
		cfg := Config{CacheDir: dir, Allow: []string{l.Path, other.Path}}
		vs := Check(discovered(t, cfg, l.Path), 0, cfg)
		wantRefused(t, vs, GuardCache, "holds the node cache "+dir+" (on "+l.Path+")")
		wantRefused(t, vs, GuardMounted, l.Path+" is mounted on "+mnt)
		wantPassed(t, Check(discovered(t, cfg, other.Path), 0, cfg), GuardCache)
		if err := Refusal(Check(discovered(t, cfg, l.Path), 0, Config{CacheDir: dir})); strings.Contains(err.Error(), "--allow") {
			t.Errorf("Refusal() of the cache disk, not allowed = %v, want no hint to allow it", err)
		}
	}
	if after := testenv.DeviceSHA256(t, l.Path); after != before {
		t.Errorf("device bytes changed: sha256 %s, want %s", after, before)
	}
}

// TestRootDiskRefused: the disk holding / is the system disk. Where / is
// not on a block device (an overlay in a container) there is no such disk
// to find; TestSwapDiskRefused still covers the system guard there.
func TestRootDiskRefused(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	root := rootDisk(t, devString(st.Dev))
	if root == "" {
		t.Skipf("/ is on device %s, which is no block device (overlay or network root): no system disk to refuse", devString(st.Dev))
	}
	d := discovered(t, Config{}, "/dev/"+root)
	vs := Check(d, 0, Config{Allow: []string{d.ID}})
	wantRefused(t, vs, GuardSystem, "system disk: holds / (on /dev/")
	if err := Refusal(vs); !errors.Is(err, ErrRefused) {
		t.Errorf("Refusal() = %v, want ErrRefused", err)
	}
	// Not allowed: the policy refuses it too, without ever suggesting to
	// allow the disk that holds /.
	if d.Transport == TransportUSB || d.Removable {
		return
	}
	vs = Check(d, 0, Config{})
	wantRefused(t, vs, GuardPolicy, "disk, not removable")
	if err := Refusal(vs); strings.Contains(err.Error(), "allow") {
		t.Errorf("Refusal() of the system disk = %v, want no hint to allow it", err)
	}
}

// rootDisk finds the disk under device dev the plain way, through
// /sys/dev/block: a partition's parent folder is its disk.
func rootDisk(t *testing.T, dev string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks("/sys/dev/block/" + dev)
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
		p = filepath.Dir(p)
	}
	return filepath.Base(p)
}

func TestSwapDiskRefused(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 32<<20)
	testenv.Command(t, "mkswap", l.Path)
	testenv.Command(t, "swapon", l.Path)
	t.Cleanup(func() { testenv.Command(t, "swapoff", l.Path) })

	d := discovered(t, Config{}, l.Path)
	wantRefused(t, Check(d, 0, Config{Allow: []string{d.ID}}), GuardSystem, "swap "+l.Path)
}

func TestPolicy(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 16<<20)
	d := discovered(t, Config{}, l.Path)
	link := filepath.Join(t.TempDir(), "by-path-link")
	if err := os.Symlink(l.Path, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		allow []string
		ok    bool
		want  string
	}{
		{nil, false, "loop disk, not removable: allow it by id, slot or path (--allow " + d.ID + ")"},
		{[]string{"loop-000000000000", "/dev/sdz"}, false, "not removable"},
		{[]string{d.ID}, true, "allowed by id " + d.ID},
		{[]string{d.Path}, true, "allowed by path " + d.Path},
		{[]string{link}, true, "allowed by path " + link},
	} {
		v := verdict(t, Check(d, 0, Config{Allow: tc.allow}), GuardPolicy)
		if v.OK != tc.ok || !strings.Contains(v.Reason, tc.want) {
			t.Errorf("policy with Allow %v = %+v, want ok %v with %q", tc.allow, v, tc.ok, tc.want)
		}
	}

	allowed := Config{Allow: []string{d.ID}}
	wantRefused(t, Check(d, d.Size+1, allowed), GuardSize, "drive is 16 MiB (16777216 bytes), the image needs 16 MiB (16777217 bytes)")
	wantPassed(t, Check(d, d.Size, allowed), GuardSize)
	if err := Refusal(Check(d, d.Size, allowed)); err != nil {
		t.Errorf("Refusal() for an allowed, free, large enough loop device = %v, want nil", err)
	}

	ro := testenv.NewLoop(t, 16<<20, "--read-only")
	dro := discovered(t, Config{}, ro.Path)
	if !dro.ReadOnly {
		t.Errorf("Discover() of a read-only loop = %+v, want ReadOnly", dro)
	}
	wantRefused(t, Check(dro, 0, Config{Allow: []string{dro.ID}}), GuardReadOnly, "read-only")
}

func TestVirtualDrivePolicy(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key.img"), make([]byte, 8192), 0o644)
	drives, err := discoverVirtual(dir)
	if err != nil || len(drives) != 1 {
		t.Fatalf("discoverVirtual() = %v, %v", drives, err)
	}
	vs := Check(drives[0], 8192, Config{})
	if err := Refusal(vs); err != nil {
		t.Errorf("Check() of a virtual drive = %v, want every guard passed", err)
	}
	wantRefused(t, Check(drives[0], 8193, Config{}), GuardSize, "the image needs")
}

func TestRefusalMessage(t *testing.T) {
	err := Refusal([]Verdict{
		{Guard: GuardSystem, OK: true, Reason: "fine"},
		{Guard: GuardMounted, Reason: "/dev/sdb1 is mounted on /media/x"},
		{Guard: GuardPolicy, Reason: "sata disk, not removable"},
	})
	want := "refused: mounted: /dev/sdb1 is mounted on /media/x; policy: sata disk, not removable"
	if err == nil || err.Error() != want || !errors.Is(err, ErrRefused) {
		t.Errorf("Refusal() = %v, want %q wrapping ErrRefused", err, want)
	}
	if err := Refusal([]Verdict{{Guard: GuardSize, OK: true}}); err != nil {
		t.Errorf("Refusal(all ok) = %v, want nil", err)
	}
}
