package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestWriteCheckCapacityRefusesAFakeKey writes with --check-capacity to an
// honest loop device and to a counterfeit one (a loop device over a FUSE
// file that advertises 32 MiB, holds 8 MiB and wraps): the fake fails,
// naming both sizes, with nothing of the image written, and the honest one
// is imaged; the exit code says not every drive verified.
func TestWriteCheckCapacityRefusesAFakeKey(t *testing.T) {
	testenv.RequireRoot(t)
	const size = 12<<20 + 4096
	store, img := pushedImage(t, size)
	honest, fake := garbageLoop(t, 32<<20), testenv.NewFakeKey(t, 32<<20, 8<<20)
	out, err := run(t, "--store", store, "write", "disk:1", "--cache", t.TempDir(), "--json", "--check-capacity",
		"--drive", honest.Path, "--allow", honest.Path, "--drive", fake.Path, "--allow", fake.Path)
	if err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Errorf("write --check-capacity with a fake key = %v, want an error saying some drives were not verified", err)
	}
	var rows []struct {
		Result struct {
			Phase        string `json:"result"`
			Error        string `json:"error"`
			BytesWritten int64  `json:"bytes_written"`
			Capacity     struct {
				Usable int64 `json:"usable"`
			} `json:"capacity"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("write --json = %s (%v)", out, err)
	}
	if r := rows[0].Result; r.Phase != "verified" || r.Capacity.Usable != 32<<20 {
		t.Errorf("honest %s: %+v, want verified with all 32 MiB usable", honest.Path, r)
	}
	if got, want := testenv.SHA256(t, honest.Path, size), testenv.SHA256(t, img, -1); got != want {
		t.Errorf("honest %s holds sha256 %s, the image %s", honest.Path, got, want)
	}
	const reason = "advertises 34 MB but holds only 8.4 MB (8388608 bytes): counterfeit or failing key"
	if r := rows[1].Result; r.Phase != "failed" || r.BytesWritten != 0 || r.Capacity.Usable != 8<<20 || !strings.Contains(r.Error, reason) {
		t.Errorf("fake %s: %+v, want failed, nothing written, saying %q", fake.Path, r, reason)
	}
}
