package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// pushedImage pushes a disk-shaped image of size bytes into a new file
// store and returns the store URL and the image's file.
func pushedImage(t *testing.T, size int64) (string, string) {
	t.Helper()
	store := "file://" + t.TempDir()
	img := writeDiskImage(t, size, 21)
	mustRun(t, "--store", store, "image", "push", "disk:1", img, "--chunk-size", "1048576")
	return store, img
}

// garbageLoop is a loop device full of 0xEE, so that a refused write can be
// seen to have left it untouched.
func garbageLoop(t *testing.T, size int64) *testenv.Loop {
	t.Helper()
	l := testenv.NewLoop(t, size)
	f, err := os.OpenFile(l.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte(strings.Repeat("\xEE", int(size)))); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestWriteLoopDevicesMatchTheImage(t *testing.T) {
	testenv.RequireRoot(t)
	store, img := pushedImage(t, 12<<20+4096)
	a, b := garbageLoop(t, 16<<20), garbageLoop(t, 16<<20)
	out := mustRun(t, "--store", store, "write", "disk:1", "--cache", t.TempDir(), "--json",
		"--drive", a.Path, "--allow", a.Path, "--drive", b.Path, "--allow", b.Path)
	var rows []struct {
		Result struct {
			Phase    string `json:"result"`
			ReadBack string `json:"read_back"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("write --json = %s (%v)", out, err)
	}
	want := testenv.SHA256(t, img, -1)
	for i, l := range []*testenv.Loop{a, b} {
		if rows[i].Result.Phase != "verified" || rows[i].Result.ReadBack != "direct" {
			t.Errorf("%s: %+v, want verified, read back with O_DIRECT", l.Path, rows[i].Result)
		}
		if got := testenv.SHA256(t, l.Path, 12<<20+4096); got != want {
			t.Errorf("%s holds sha256 %s, the image %s", l.Path, got, want)
		}
	}
}

func TestWriteRefusesAndLeavesDrivesUntouched(t *testing.T) {
	testenv.RequireRoot(t)
	store, _ := pushedImage(t, 4<<20)
	plain := garbageLoop(t, 16<<20)
	mounted := garbageLoop(t, 32<<20)
	mnt := testenv.MountExt4(t, mounted.Path)
	cacheDir := filepath.Join(mnt, "cache")
	if err := os.Mkdir(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	small := garbageLoop(t, 1<<20)
	for _, tc := range []struct {
		name  string
		loop  *testenv.Loop
		args  []string
		wants []string
	}{
		{"not removable", plain, nil, []string{"policy: loop disk", "--allow"}},
		{"mounted", mounted, []string{"--allow", mounted.Path}, []string{"mounted:", mnt}},
		{"holds the cache", mounted, []string{"--allow", mounted.Path, "--cache", cacheDir}, []string{"cache:"}},
		{"too small", small, []string{"--allow", small.Path}, []string{"size:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testenv.DeviceSHA256(t, tc.loop.Path)
			args := append([]string{"--store", store, "write", "disk:1", "--drive", tc.loop.Path}, tc.args...)
			if !containsArg(args, "--cache") {
				args = append(args, "--cache", t.TempDir())
			}
			out, err := run(t, args...)
			for _, want := range tc.wants {
				if err == nil || !strings.Contains(out, want) {
					t.Errorf("write %s = %v, output lacks %q:\n%s", tc.name, err, want, out)
				}
			}
			if after := testenv.DeviceSHA256(t, tc.loop.Path); after != before {
				t.Errorf("refused drive %s changed", tc.loop.Path)
			}
		})
	}
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func TestWriteDryRunWritesNothing(t *testing.T) {
	store, _ := pushedImage(t, 4<<20)
	dir := t.TempDir()
	drive := filepath.Join(dir, "key.img")
	os.WriteFile(drive, []byte(strings.Repeat("\xEE", 8<<20)), 0o644)
	out := mustRun(t, "--store", store, "write", "disk:1", "--virtual-drives", dir, "--drive", "virt-key.img", "--dry-run", "--cache", t.TempDir())
	for _, want := range []string{"plan: write disk:1", "WRITE virt-key.img", "ok   size"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(drive); strings.Trim(string(b), "\xEE") != "" {
		t.Errorf("dry run wrote to the drive")
	}
	if _, err := run(t, "--store", store, "write", "disk:1", "--virtual-drives", dir, "--drive", "nope", "--cache", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--drive nope") {
		t.Errorf("write to an unknown drive = %v, want an error naming it", err)
	}
}

// TestWriteDryRunNamesTheRefusingGuard dry-runs a write to a loop device
// that is not allowed and to one that is allowed but held open exclusively
// elsewhere: each is refused naming its guard, in text and in JSON, the
// exit code is non-zero, and neither is written.
func TestWriteDryRunNamesTheRefusingGuard(t *testing.T) {
	testenv.RequireRoot(t)
	store, _ := pushedImage(t, 4<<20)
	free, held := garbageLoop(t, 16<<20), garbageLoop(t, 16<<20)
	holder, err := os.OpenFile(held.Path, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	before := []string{testenv.DeviceSHA256(t, free.Path), testenv.DeviceSHA256(t, held.Path)}
	args := []string{"--store", store, "write", "disk:1", "--dry-run", "--cache", t.TempDir(),
		"--drive", free.Path, "--drive", held.Path, "--allow", held.Path}

	out, err := run(t, args...)
	if err == nil || !strings.Contains(err.Error(), "would be refused") {
		t.Errorf("dry run with refused drives = %v, want an error saying drives would be refused", err)
	}
	blocks := strings.Split(out, "\n\n")
	if len(blocks) != 3 {
		t.Fatalf("dry run output is not a plan line and two drives:\n%s", out)
	}
	for i, wants := range [][]string{
		{"REFUSE ", free.Path, "FAIL policy     loop disk, not removable", "ok   identity", "ok   exclusive  opened exclusively"},
		{"REFUSE ", held.Path, "ok   policy     allowed by path", "ok   identity", "FAIL exclusive  open " + held.Path + " exclusively"},
	} {
		for _, want := range wants {
			if !strings.Contains(blocks[i+1], want) {
				t.Errorf("dry run, drive %d: output lacks %q:\n%s", i, want, blocks[i+1])
			}
		}
	}

	out, err = run(t, append(args, "--json")...)
	if err == nil {
		t.Errorf("dry run --json with refused drives succeeded, want a non-zero exit")
	}
	var plan struct {
		Ref    string `json:"ref"`
		Size   int64  `json:"size"`
		Drives []struct {
			Drive    struct{ Path string } `json:"drive"`
			Verdicts []struct {
				Guard string `json:"guard"`
				OK    bool   `json:"ok"`
			} `json:"verdicts"`
			Refused string `json:"refused"`
		} `json:"drives"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || plan.Ref != "disk:1" || plan.Size != 4<<20 || len(plan.Drives) != 2 {
		t.Fatalf("dry run --json = %s (%v), want the plan of disk:1 for two drives", out, err)
	}
	for i, refusedBy := range []string{"policy", "exclusive"} {
		d := plan.Drives[i]
		var failed []string
		for _, v := range d.Verdicts {
			if !v.OK {
				failed = append(failed, v.Guard)
			}
		}
		if len(d.Verdicts) != 9 || !slices.Equal(failed, []string{refusedBy}) || !strings.HasPrefix(d.Refused, "refused: "+refusedBy+": ") {
			t.Errorf("dry run --json, %s: %d verdicts, failed %v, refused %q; want all 9 guards, refused by %s alone",
				d.Drive.Path, len(d.Verdicts), failed, d.Refused, refusedBy)
		}
	}
	for i, l := range []*testenv.Loop{free, held} {
		if after := testenv.DeviceSHA256(t, l.Path); after != before[i] {
			t.Errorf("dry run changed %s", l.Path)
		}
	}
}

// TestWriteRefusesImagesThatAreNotDiskImages: imagefarm write names the
// kind of an image that does not go on a drive (or says it is empty) and
// writes nothing, by the same rule as the controller's at submit.
func TestWriteRefusesImagesThatAreNotDiskImages(t *testing.T) {
	store := "file://" + t.TempDir()
	dir, drives := t.TempDir(), t.TempDir()
	notes, empty, drive := filepath.Join(dir, "notes.txt"), filepath.Join(dir, "empty.img"), filepath.Join(drives, "drive.img")
	for _, f := range []struct {
		path string
		data string
	}{{notes, "not a disk"}, {empty, ""}, {drive, strings.Repeat("\xEE", 1<<20)}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "--store", store, "image", "push", "notes:1", notes, "--kind", "file")
	mustRun(t, "--store", store, "image", "push", "empty:1", empty)
	for ref, want := range map[string]string{
		"notes:1": "image notes:1 is a file, not a disk image: only disk images are written to drives",
		"empty:1": "image empty:1 is empty (0 bytes)",
	} {
		out, err := run(t, "--store", store, "write", ref, "--cache", t.TempDir(), "--virtual-drives", drives, "--drive", "virt-drive.img")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("write %s = %v (%s), want %q", ref, err, out, want)
		}
	}
	if got, err := os.ReadFile(drive); err != nil || string(got) != strings.Repeat("\xEE", 1<<20) {
		t.Errorf("the drive file changed (%v)", err)
	}
}
