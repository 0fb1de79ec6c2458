package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDrivesLocalVirtual lists a folder of virtual drives with --local,
// even with a controller set: the regular, non-empty, visible files are
// drives, each with its size and every guard's verdict; an empty file, a
// hidden one and a symlink to a device are not.
func TestDrivesLocalVirtual(t *testing.T) {
	dir := t.TempDir()
	for name, size := range map[string]int{"key-a.img": 8 << 20, "key b.img": 1 << 20, "empty.img": 0, ".lock": 512} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/dev/null", filepath.Join(dir, "sda")); err != nil {
		t.Fatal(err)
	}
	args := []string{"drives", "--local", "--controller", "127.0.0.1:1", "--virtual-drives", dir}

	out := mustRun(t, append(args, "--json")...)
	var rows []struct {
		ID        string `json:"id"`
		Path      string `json:"path"`
		Size      int64  `json:"size"`
		Transport string `json:"transport"`
		Writable  bool   `json:"writable"`
		Verdicts  []struct {
			Guard string `json:"guard"`
			OK    bool   `json:"ok"`
		} `json:"verdicts"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("drives --json = %s: %v", out, err)
	}
	got := map[string]int64{}
	for _, r := range rows {
		if r.Transport != "virtual" {
			continue // the machine's own disks and other tests' loop devices
		}
		got[r.ID] = r.Size
		if !r.Writable || len(r.Verdicts) != 7 || filepath.Dir(r.Path) != dir {
			t.Errorf("drives --json, %s: writable %v, %d verdicts, path %s; want writable, all 7 passive guards, in %s",
				r.ID, r.Writable, len(r.Verdicts), r.Path, dir)
		}
	}
	// A file name that is not an id as it is gets its hash in the id.
	want := map[string]int64{"virt-key-a.img": 8 << 20, "virt-key_b.img-0d0f0080d51f": 1 << 20}
	if len(got) != len(want) {
		t.Errorf("drives --json lists virtual drives %v, want %v", got, want)
	}
	for id, size := range want {
		if got[id] != size {
			t.Errorf("drives --json: %s is %d bytes, want %d (all: %v)", id, got[id], size, got)
		}
	}

	out = mustRun(t, args...)
	for _, want := range []string{"virt-key-a.img", "8.0 MiB", "virtual"} {
		if !strings.Contains(out, want) {
			t.Errorf("drives output lacks %q:\n%s", want, out)
		}
	}
}
