package reset_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv/reset"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestPreflightMatchesNamesWithoutCase renames the folders a preflight
// looks for to other cases (ntfs-3g's tools match case exactly, Windows
// does not): it still finds Windows and WinRE, says what it found, and
// writes nothing.
func TestPreflightMatchesNamesWithoutCase(t *testing.T) {
	t.Parallel()
	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	rename := func(n int, pairs ...string) {
		withNTFS(t, d, n, false, func(root string) {
			for i := 0; i < len(pairs); i += 2 {
				if err := os.Rename(filepath.Join(root, pairs[i]), filepath.Join(root, pairs[i+1])); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	rename(testenv.RecoveryPartition, "Recovery/WindowsRE/Winre.wim", "Recovery/WindowsRE/winre.wim", "Recovery/WindowsRE", "Recovery/WINDOWSRE", "Recovery", "recovery")
	rename(testenv.WindowsPartition, "Windows/System32", "Windows/system32", "Windows", "WINDOWS")
	before := diskHash(t, d)
	image, _ := newImage(t)
	l, err := reset.Preflight(t.Context(), plan(t, d, image))
	if err != nil {
		t.Fatalf("Preflight: %v", err)
	}
	if l.Windows.Number != testenv.WindowsPartition || l.WinRE != "4:recovery/WINDOWSRE/winre.wim" || l.Label != "Windows" {
		t.Errorf("Preflight found Windows %d, WinRE %q, label %q; want 3, 4:recovery/WINDOWSRE/winre.wim, Windows", l.Windows.Number, l.WinRE, l.Label)
	}
	if len(l.Untouched) != 3 || len(l.Profiles) != 1 || l.Profiles[0] != "Users/alice" {
		t.Errorf("Preflight: %d partitions hashed, profiles %v; want 3 and Users/alice", len(l.Untouched), l.Profiles)
	}
	if after := diskHash(t, d); after != before {
		t.Error("Preflight changed the disk")
	}
}
