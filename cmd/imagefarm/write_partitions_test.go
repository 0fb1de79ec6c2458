package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestWriteByPartition writes a Windows disk image to another Windows disk
// on a loop device with imagefarm write --keep 4: the kept recovery
// partition is byte-identical and listed with its hashes in --json; then
// with --partition 3 to a disk laid out otherwise, refused by name with
// the drive untouched.
func TestWriteByPartition(t *testing.T) {
	testenv.RequireRoot(t)
	opts := testenv.WindowsDiskOptions{WindowsSize: 48 << 20}
	image := testenv.NewWindowsDisk(t, opts)
	store := "file://" + t.TempDir()
	mustRun(t, "--store", store, "image", "push", "windows:1", image.Path, "--chunk-size", "1048576")
	opts.NoWinRE = true
	d := testenv.NewWindowsDisk(t, opts)
	l := testenv.AttachLoop(t, d.Path)
	before := d.PartitionSHA256(t, testenv.RecoveryPartition)
	out := mustRun(t, "--store", store, "write", "windows:1", "--cache", t.TempDir(), "--json", "--drive", l.Path, "--allow", l.Path, "--keep", "4")
	var rows []struct {
		Result struct {
			Phase string `json:"result"`
			Kept  []struct {
				Name   string `json:"name"`
				Before string `json:"sha256_before"`
				After  string `json:"sha256_after"`
			} `json:"kept"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("write --json = %s (%v)", out, err)
	}
	r := rows[0].Result
	if r.Phase != "verified" || len(r.Kept) != 1 || r.Kept[0].Before != before || r.Kept[0].After != before {
		t.Errorf("write --keep 4 = %+v, want verified, partition 4 kept with SHA-256 %s before and after", r, before)
	}
	if got := d.PartitionSHA256(t, testenv.RecoveryPartition); got != before {
		t.Errorf("kept partition 4 changed")
	}
	other := testenv.NewWindowsDisk(t, testenv.WindowsDiskOptions{WindowsSize: 64 << 20})
	ol := testenv.AttachLoop(t, other.Path)
	whole := testenv.DeviceSHA256(t, ol.Path)
	out, err := run(t, "--store", store, "write", "windows:1", "--cache", t.TempDir(), "--drive", ol.Path, "--allow", ol.Path, "--partition", "4")
	if err == nil || !strings.Contains(out, "partition 4: image starts at sector 215040, drive at 247808") {
		t.Errorf("write --partition 4 to a disk laid out otherwise = %v, want the difference named:\n%s", err, out)
	}
	if testenv.DeviceSHA256(t, ol.Path) != whole {
		t.Errorf("the refused drive changed")
	}
}
