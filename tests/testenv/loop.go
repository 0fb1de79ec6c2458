package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireRoot skips a test that needs loop devices or mounts when it does
// not run as root, saying so. CI runs as root, so there these tests run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: loop devices and mounts need root (CI runs these as root)")
	}
}

// Command runs a tool a test needs and fails the test with its output.
func Command(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Loop is a loop device on a sparse file: a real block device for tests.
type Loop struct {
	Path    string // /dev/loopN
	Backing string
	once    sync.Once
}

// NewLoop attaches a sparse file of size bytes as a loop device, detached
// when the test ends; args go to losetup (--sector-size 4096, -P, …).
func NewLoop(t testing.TB, size int64, args ...string) *Loop {
	t.Helper()
	backing := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(backing)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	l := &Loop{Backing: backing}
	l.Path = Command(t, "losetup", append(append([]string{"--find", "--show"}, args...), backing)...)
	t.Cleanup(func() { l.Detach(t) })
	return l
}

// Detach detaches the loop device, once; later calls do nothing.
func (l *Loop) Detach(t testing.TB) {
	t.Helper()
	l.once.Do(func() {
		if out, err := exec.Command("losetup", "-d", l.Path).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", l.Path, err, out)
		}
	})
}

// SHA256 is the hex SHA-256 of the first n bytes of path (all if n < 0),
// computed with nothing of imagefarm's.
func SHA256(t testing.TB, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
