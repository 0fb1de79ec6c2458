package testenv

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NTFSFiles reads every file of the NTFS volume on dev through an ntfs-3g
// read-only mount (a reader imagefarm did not write): slash-separated path →
// content. The volume is unmounted before it returns.
func NTFSFiles(t testing.TB, dev string) map[string]string {
	t.Helper()
	files := map[string]string{}
	MountNTFS(t, dev, "ro", func(dir string) {
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
	})
	return files
}

// MountNTFS mounts the NTFS volume on dev with ntfs-3g (opts: its -o
// options, e.g. "ro" or "streams_interface=xattr"), calls do with the
// mount's folder, and unmounts it, waiting until ntfs-3g has exited (it
// runs in the foreground, no_detach), so that the device is closed and
// written when MountNTFS returns.
func MountNTFS(t testing.TB, dev, opts string, do func(dir string)) {
	t.Helper()
	dir := t.TempDir()
	if opts != "" {
		opts = "," + opts
	}
	cmd := exec.Command(Tool(t, "ntfs-3g", "ntfs-3g"), "-o", "no_detach"+opts, dev, dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	Eventually(t, 30*time.Second, "ntfs-3g mounts "+dev, func() bool {
		select {
		case err := <-done:
			t.Fatalf("ntfs-3g %s: %v\n%s", dev, err, stderr.Bytes())
		default:
		}
		var st, parent unix.Stat_t
		return unix.Stat(dir, &st) == nil && unix.Stat(filepath.Dir(dir), &parent) == nil && st.Dev != parent.Dev
	})
	defer func() {
		Unmount(t, dir)
		if err := <-done; err != nil {
			t.Errorf("ntfs-3g %s: %v\n%s", dev, err, stderr.Bytes())
		}
	}()
	do(dir)
}

// Unmount unmounts dir, retrying while it is busy: a process another test
// forks holds, until it execs, a copy of every open file descriptor, files
// in the mount included.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err = unix.Unmount(dir, 0); !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Errorf("unmount %s: %v", dir, err)
	}
}
