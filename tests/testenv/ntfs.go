package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// NTFSFiles reads every file of the NTFS volume on dev through an ntfs-3g
// read-only mount (a reader imagefarm did not write): slash-separated path →
// content. The volume is unmounted before it returns.
func NTFSFiles(t testing.TB, dev string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	Run(t, "ntfs-3g", "ntfs-3g", "-o", "ro", dev, dir)
	defer func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("read NTFS volume %s: %v", dev, err)
	}
	return files
}
