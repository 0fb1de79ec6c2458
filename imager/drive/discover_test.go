package drive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

func TestDiscoverLoop(t *testing.T) {
	testenv.RequireRoot(t)
	plain := testenv.NewLoop(t, 64<<20)
	big := testenv.NewLoop(t, 32<<20, "--sector-size", "4096")

	d := discovered(t, Config{}, plain.Path)
	if d.Size != 64<<20 || d.LogicalBlockSize != 512 || d.Transport != TransportLoop || d.Removable ||
		d.BackingFile != plain.Backing || !strings.HasPrefix(d.ID, "loop-") || d.DevNum == "" || d.Slot != "" {
		t.Errorf("Discover() found %+v, want a 64 MiB loop drive backed by %s", d, plain.Backing)
	}
	d4k := discovered(t, Config{}, big.Path)
	if d4k.Size != 32<<20 || d4k.LogicalBlockSize != 4096 || d4k.PhysicalBlockSize != 4096 {
		t.Errorf("Discover() found %+v, want 32 MiB with 4096-byte logical and physical blocks", d4k)
	}
	if d.ID == d4k.ID {
		t.Errorf("two loop devices share id %s", d.ID)
	}

	// Find resolves /dev/disk/by-* style symlinks.
	link := filepath.Join(t.TempDir(), "usb-Some_Key-0:0")
	if err := os.Symlink(plain.Path, link); err != nil {
		t.Fatal(err)
	}
	drives, _ := Discover(Config{})
	if got, err := Find(drives, link); err != nil || got.Path != plain.Path {
		t.Errorf("Find(%s) = %s, %v, want %s", link, got.Path, err, plain.Path)
	}
	if got, err := Find(drives, d.ID); err != nil || got.Path != plain.Path {
		t.Errorf("Find(%s) = %s, %v, want %s", d.ID, got.Path, err, plain.Path)
	}

	// The id follows the backing file, not the loop number: detached and
	// attached again (wherever losetup puts it), same id.
	plain.Detach(t)
	again := testenv.AttachLoop(t, plain.Backing)
	if got := discovered(t, Config{}, again.Path).ID; got != d.ID {
		t.Errorf("id of %s attached again = %s, want %s", plain.Backing, got, d.ID)
	}
}

func TestDiscoverSkipsUnboundLoops(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 8<<20)
	l.Detach(t)
	drives, err := Discover(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drives {
		if d.BackingFile == l.Backing { // the number itself may be bound again by another test
			t.Errorf("Discover() lists detached %s: %+v", l.Path, d)
		}
	}
}

func TestDiscoverVirtual(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key 1.img"), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden"), make([]byte, 4096), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.Symlink("/dev/null", filepath.Join(dir, "link-to-a-device")) // must never pass as a virtual drive

	drives, err := Discover(Config{SysRoot: t.TempDir() + "/none", VirtualDir: dir})
	if err == nil {
		t.Fatalf("Discover() with no sysfs = %v, want an error", drives)
	}
	drives, err = Discover(Config{VirtualDir: dir, VirtualOnly: true})
	if err != nil || len(drives) != 1 || drives[0].Transport != TransportVirtual {
		t.Errorf("Discover(VirtualOnly) = %+v, %v; want key 1.img and none of the machine's disks", drives, err)
	}
	virt, err := discoverVirtual(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(virt) != 1 {
		t.Fatalf("discoverVirtual() = %+v, want only key 1.img", virt)
	}
	v := virt[0]
	if v.ID != "virt-key_1.img-"+shortHash("key 1.img") || v.Size != 4096 || v.Transport != TransportVirtual || v.Path != filepath.Join(dir, "key 1.img") || v.ReadOnly {
		t.Errorf("discoverVirtual() = %+v", v)
	}
}

func TestWatchSeesAttachAndDetach(t *testing.T) {
	testenv.RequireRoot(t)
	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan Event, 64)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, Config{}, 0, func(ev Event) { events <- ev }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch() = %v, want nil after cancel", err)
		}
	}()
	// Whether the first look lists it or a later one sees it come, the
	// loop device is reported inserted once (drives present at the start
	// are reported inserted too).
	l := testenv.NewLoop(t, 16<<20)
	attached := time.Now()
	ev := waitEvent(t, events, Inserted, l.Backing)
	if ev.Drive.Size != 16<<20 {
		t.Errorf("inserted %+v, want the 16 MiB drive", ev.Drive)
	}
	l.Detach(t)
	detached := time.Now()
	waitEvent(t, events, Removed, l.Backing)
	t.Logf("insertion seen after %v, removal after %v (looking every %v)", detached.Sub(attached).Round(time.Millisecond),
		time.Since(detached).Round(time.Millisecond), DefaultWatchInterval)
}

// watchBound bounds a wait for a Watch event so that a test that fails
// ends instead of hanging. It asserts no speed: an event comes within
// DefaultWatchInterval and a look, unless the machine is starved.
const watchBound = time.Minute

// waitEvent waits for kind about the loop device backed by backing,
// passing over events about other drives: other tests attach loop devices
// too, at the same numbers.
func waitEvent(t *testing.T, events <-chan Event, kind EventKind, backing string) Event {
	t.Helper()
	deadline := time.After(watchBound)
	for {
		select {
		case ev := <-events:
			if ev.Kind == kind && ev.Drive.BackingFile == backing {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for the loop device on %s within %v", kind, backing, watchBound)
		}
	}
}

func TestDiff(t *testing.T) {
	a := Drive{ID: "usb-A", Path: "/dev/sdb", DevNum: "8:16"}
	b := Drive{ID: "usb-B", Path: "/dev/sdc", DevNum: "8:32"}
	swapped := Drive{ID: "usb-C", Path: "/dev/sdb", DevNum: "8:16"}
	virt := Drive{ID: "virt-key.img", Path: "/dev-farm/key.img", Serial: "VIRT803-11"}
	reinserted := virt
	reinserted.Serial = "VIRT803-12" // the file replaced under its name
	known := map[string]Drive{}
	steps := []struct {
		drives []Drive
		want   []string
	}{
		{[]Drive{a, b}, []string{"inserted usb-A", "inserted usb-B"}},
		{[]Drive{a, b}, nil},
		{[]Drive{b}, []string{"removed usb-A"}},
		{[]Drive{a, b}, []string{"inserted usb-A"}},
		{[]Drive{swapped, b}, []string{"removed usb-A", "inserted usb-C"}},
		{nil, []string{"removed usb-C", "removed usb-B"}},
		{[]Drive{virt}, []string{"inserted virt-key.img"}},
		{[]Drive{reinserted}, []string{"removed virt-key.img", "inserted virt-key.img"}},
	}
	for i, s := range steps {
		var got []string
		for _, ev := range diff(known, s.drives) {
			got = append(got, string(ev.Kind)+" "+ev.Drive.ID)
		}
		if strings.Join(got, ",") != strings.Join(s.want, ",") {
			t.Errorf("step %d: diff() = %v, want %v", i, got, s.want)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	drives := []Drive{
		{ID: "usb-Kingston_DT_1", Path: "/dev/sdb", Name: "sdb", Slot: "pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0"},
		{ID: "ata-Samsung_SSD_S3Z", Path: "/dev/sda", Name: "sda"},
		{ID: "virt-sda", Path: filepath.Join(dir, "sda"), Name: "sda", Transport: TransportVirtual},
	}
	for _, tc := range []struct{ in, want string }{
		{"usb-Kingston_DT_1", "/dev/sdb"},
		{"/dev/sdb", "/dev/sdb"},
		{"sdb", "/dev/sdb"},
		{"pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0", "/dev/sdb"},
		{"virt-sda", filepath.Join(dir, "sda")},
		{"/dev/sda", "/dev/sda"},
	} {
		if d, err := Find(drives, tc.in); err != nil || d.Path != tc.want {
			t.Errorf("Find(%q) = %s, %v, want %s", tc.in, d.Path, err, tc.want)
		}
	}
	if _, err := Find(drives, "sda"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Find(sda) = %v, want ambiguous (a disk and a virtual drive)", err)
	}
	if _, err := Find(drives, "sdz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(sdz) = %v, want ErrNotFound", err)
	}
}

// TestDriveIDsFollowTheRule: whatever a file (or a disk's firmware) is
// called, discovery makes ids that ident.DriveID accepts, so that the
// controller takes the node's Hello and the CLI can name every drive; a
// cut id stays unique and stable.
func TestDriveIDsFollowTheRule(t *testing.T) {
	dir := t.TempDir()
	names := []string{
		strings.Repeat("k", 255), strings.Repeat("k", 254) + "x", // cut: they must stay two drives
		strings.Repeat("é", 127), // 254 bytes of Unicode
		"key 1.img", "key_1.img", "a!b", "ü", "ö", "tab\tname",
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte{1}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sys := t.TempDir()
	if err := os.Mkdir(filepath.Join(sys, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	drives, err := Discover(Config{SysRoot: sys, VirtualDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range drives {
		if err := ident.DriveID(d.ID); err != nil {
			t.Errorf("drive %q has id %q: %v", d.Name, d.ID, err)
		}
		if seen[d.ID] {
			t.Errorf("two drives have the id %q", d.ID)
		}
		seen[d.ID] = true
	}
	if len(drives) != len(names) {
		t.Errorf("Discover found %d drives, want %d", len(drives), len(names))
	}
	again, _ := discoverVirtual(dir)
	for _, d := range again {
		if !seen[d.ID] {
			t.Errorf("rediscovered drive %q has id %q, not the one Discover gave it", d.Name, d.ID)
		}
	}
	for _, id := range []string{"dev-cciss!c0d0", "wwn-0x5000 c500", strings.Repeat("s", 300)} {
		if got := fitID(id); ident.DriveID(got) != nil || fitID(got) != got {
			t.Errorf("fitID(%q) = %q, want an id ident.DriveID accepts and fitID keeps", id, got)
		}
	}
}
