package testenv_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestWindowsDisk checks the fixture with readers imagefarm did not write:
// sfdisk sees the four partitions with Windows' types, ntfs-3g reads every
// file back from the Windows volume and WinRE from the recovery volume, and
// mtools finds the boot manager on the EFI partition.
func TestWindowsDisk(t *testing.T) {
	d := testenv.NewWindowsDisk(t, testenv.WindowsDiskOptions{Files: map[string]string{"Windows/System32/config/SOFTWARE": "hive"}})
	types := map[int]string{
		testenv.EFIPartition:      "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
		testenv.MSRPartition:      "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",
		testenv.WindowsPartition:  "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
		testenv.RecoveryPartition: "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC",
	}
	for n, typ := range types {
		if d.Partitions[n].Type != typ {
			t.Errorf("partition %d type %s, want %s", n, d.Partitions[n].Type, typ)
		}
	}
	win := testenv.NTFSFiles(t, d.AttachPartition(t, testenv.WindowsPartition).Path)
	if !maps.Equal(win, d.Files) {
		t.Errorf("Windows volume has %v, want %v", slices.Sorted(maps.Keys(win)), slices.Sorted(maps.Keys(d.Files)))
	}
	rec := testenv.NTFSFiles(t, d.AttachPartition(t, testenv.RecoveryPartition).Path)
	winre := testenv.Run(t, "wimtools", "wimlib-imagex", "info", writeTemp(t, rec[testenv.WinREImage]))
	if !contains(winre, "Microsoft Windows Recovery Environment") {
		t.Errorf("wimlib-imagex info of %s:\n%s", testenv.WinREImage, winre)
	}
	efi := testenv.Run(t, "mtools", "mdir", "-b", "-i", d.Path+"@@"+itoa(d.Partitions[testenv.EFIPartition].Start), "::EFI/Microsoft/Boot")
	if !contains(efi, "bootmgfw.efi") {
		t.Errorf("EFI partition's EFI/Microsoft/Boot: %s", efi)
	}
}

// TestWindowsDiskOptions checks that NoWinRE leaves the recovery volume
// without Winre.wim and NoRecovery leaves the disk with three partitions,
// and that reading a disk changes none of its partitions' bytes.
func TestWindowsDiskOptions(t *testing.T) {
	d := testenv.NewWindowsDisk(t, testenv.WindowsDiskOptions{NoWinRE: true})
	before := d.PartitionSHA256(t, testenv.RecoveryPartition)
	rec := testenv.NTFSFiles(t, d.AttachPartition(t, testenv.RecoveryPartition).Path)
	if _, ok := rec[testenv.WinREImage]; ok || len(rec) == 0 {
		t.Errorf("NoWinRE: recovery volume has %v, want files but no %s", slices.Sorted(maps.Keys(rec)), testenv.WinREImage)
	}
	if after := d.PartitionSHA256(t, testenv.RecoveryPartition); after != before {
		t.Errorf("reading the recovery volume changed it: SHA-256 %s, was %s", after, before)
	}
	d = testenv.NewWindowsDisk(t, testenv.WindowsDiskOptions{NoRecovery: true})
	if _, ok := d.Partitions[testenv.RecoveryPartition]; ok || len(d.Partitions) != 3 {
		t.Errorf("NoRecovery: partitions %v, want 1-3", d.Partitions)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
