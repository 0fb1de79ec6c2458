package userpath_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// specials makes, in a new folder, one file of every type a person may
// name by mistake, device nodes included (mknod, so root), and returns
// their paths by what the error must call them.
func specials(t *testing.T) (dir string, paths map[string]string) {
	t.Helper()
	testenv.RequireRoot(t)
	dir = t.TempDir()
	paths = map[string]string{}
	mk := func(name, is string, mode uint32, dev int) {
		p := filepath.Join(dir, name)
		if err := unix.Mknod(p, mode|0o600, dev); err != nil {
			t.Fatalf("mknod %s: %v", p, err)
		}
		paths[is] = p
	}
	mk("fifo", "a named pipe (FIFO)", unix.S_IFIFO, 0)
	mk("null", "a character device", unix.S_IFCHR, int(unix.Mkdev(1, 3)))
	mk("sdz", "a block device (a drive)", unix.S_IFBLK, int(unix.Mkdev(60, 0))) // major 60: local use, no driver
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	paths["a socket"] = sock
	paths["a folder"] = t.TempDir()
	return dir, paths
}

// within fails the test if fn has not returned within d: a refused FIFO
// must never be waited on.
func within[T any](t *testing.T, d time.Duration, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
		panic("unreachable")
	}
}

func TestOpenRefusesAllButRegularFiles(t *testing.T) {
	_, paths := specials(t)
	for is, p := range paths {
		link := p + ".link"
		if is == "a folder" {
			link = filepath.Join(t.TempDir(), "link")
		}
		if err := os.Symlink(p, link); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{p, link} {
			err := within(t, time.Minute, func() error { // only so that a blocked open fails the test
				f, err := userpath.Open(path)
				if err == nil {
					f.Close()
				}
				return err
			})
			var te *userpath.TypeError
			if !errors.As(err, &te) || te.Is != is || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "give a regular file") {
				t.Errorf("Open(%s) = %v, want a TypeError saying it is %s and to give a regular file", path, err, is)
			}
			if _, err := userpath.ReadFile(path); !errors.As(err, &te) {
				t.Errorf("ReadFile(%s) = %v, want a TypeError", path, err)
			}
		}
	}
	file := filepath.Join(t.TempDir(), "data")
	os.WriteFile(file, []byte("hello"), 0o600)
	if data, err := userpath.ReadFile(file); err != nil || string(data) != "hello" {
		t.Errorf("ReadFile(a regular file) = %q, %v", data, err)
	}
	if _, err := userpath.Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want fs.ErrNotExist", err)
	}
}

// hidden lists the names in dir that start with a dot: what a write
// left behind.
func hidden(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCreateRefusesAllButNewPathsAndFiles(t *testing.T) {
	dir, paths := specials(t)
	for is, p := range paths {
		link := filepath.Join(dir, filepath.Base(p)+".link")
		os.Symlink(p, link)
		for _, path := range []string{p, link} {
			before, _ := os.Lstat(path)
			err := userpath.WriteFile(path, []byte("x"), userpath.Options{Force: true})
			var te *userpath.TypeError
			if !errors.As(err, &te) || !strings.Contains(te.Is, is) || !strings.HasPrefix(err.Error(), path+" is ") {
				t.Errorf("WriteFile(%s, Force) = %v, want a TypeError saying it is %s", path, err, is)
			}
			if after, _ := os.Lstat(path); after == nil || after.Mode() != before.Mode() {
				t.Errorf("WriteFile(%s) changed it: %v, was %v", path, after, before)
			}
		}
	}
	if err := userpath.WriteFile(paths["a block device (a drive)"], nil, userpath.Options{Force: true}); !strings.Contains(err.Error(), "use imagefarm write to write drives") {
		t.Errorf("WriteFile(a block device) = %v, want it to say how drives are written", err)
	}
	if h := hidden(t, dir); len(h) > 0 {
		t.Errorf("refused writes left %v", h)
	}
}

func TestCreateReplacesOnlyWithForce(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.img")
	if err := userpath.WriteFile(p, []byte("one"), userpath.Options{Perm: 0o600}); err != nil {
		t.Fatalf("WriteFile(new) = %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	err := userpath.WriteFile(p, []byte("two"), userpath.Options{})
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("WriteFile(existing) = %v, want fs.ErrExist naming --force", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Errorf("a refused write changed the file to %q", b)
	}
	// A symbolic link to a file is kept, and the file it names replaced.
	link := filepath.Join(t.TempDir(), "link.img")
	os.Symlink(p, link)
	if err := userpath.WriteFile(link, []byte("two"), userpath.Options{Force: true}); err != nil {
		t.Fatalf("WriteFile(link, Force) = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("file behind the link holds %q, want two", b)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link was replaced by a file")
	}
	if h := hidden(t, dir); len(h) > 0 {
		t.Errorf("writes left %v", h)
	}
}

func TestCreateNamesMissingFolder(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nodir")
	err := userpath.WriteFile(filepath.Join(missing, "out.img"), nil, userpath.Options{})
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "folder "+missing+" does not exist: make it first (mkdir -p "+missing+"), or give a path in a folder that exists" {
		t.Errorf("WriteFile(in a missing folder) = %v, want the folder named", err)
	}
	dangling := filepath.Join(t.TempDir(), "dangling")
	os.Symlink(filepath.Join(missing, "x"), dangling)
	var te *userpath.TypeError
	if err := userpath.WriteFile(dangling, nil, userpath.Options{Force: true}); !errors.As(err, &te) || !strings.Contains(err.Error(), "which does not exist") {
		t.Errorf("WriteFile(dangling link) = %v, want it refused", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := userpath.WriteFile(filepath.Join(file, "out"), nil, userpath.Options{}); !errors.As(err, &te) || te.Path != file {
		t.Errorf("WriteFile(under a file) = %v, want a TypeError for %s", err, file)
	}
}

func TestAbortAndRemoveTemporariesLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.img")
	o, err := userpath.Create(p, userpath.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o.Write([]byte("partial"))
	if h := hidden(t, dir); len(h) != 1 {
		t.Fatalf("while writing: hidden files %v, want the one temporary file", h)
	}
	o.Abort()
	o2, err := userpath.Create(p, userpath.Options{})
	if err != nil {
		t.Fatal(err)
	}
	userpath.RemoveTemporaries() // as a forced exit does
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("after Abort and RemoveTemporaries the folder holds %v", slices.Collect(func(yield func(string) bool) {
			for _, e := range ents {
				yield(e.Name())
			}
		}))
	}
	if err := o2.Commit(); err == nil {
		t.Errorf("Commit after its temporary file was removed = nil, want an error")
	}
}

func TestMakeFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := userpath.MakeFolder(dir, 0o700); err != nil || userpath.CheckFolder(dir) != nil {
		t.Fatalf("MakeFolder(new) = %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	var te *userpath.TypeError
	if err := userpath.MakeFolder(file, 0o700); !errors.As(err, &te) || !strings.Contains(err.Error(), "give a folder") {
		t.Errorf("MakeFolder(a file) = %v, want a TypeError", err)
	}
}

// TestTempFolderIsATemporary: a work folder from TempFolder, with files
// in it, is removed by its remove and, before that, by RemoveTemporaries
// (a process made to exit mid-work), which removes nothing else.
func TestTempFolderIsATemporary(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	os.WriteFile(keep, []byte("x"), 0o600)
	for _, byExit := range []bool{false, true} {
		work, remove, err := userpath.TempFolder(dir, ".work-")
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(work, "sub"), 0o755)
		os.WriteFile(filepath.Join(work, "sub", "f"), []byte("data"), 0o600)
		if byExit {
			userpath.RemoveTemporaries()
		} else {
			remove()
		}
		if _, err := os.Stat(work); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("work folder after remove (by exit: %v): %v, want it gone", byExit, err)
		}
		remove() // after RemoveTemporaries too: harmless
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("RemoveTemporaries removed a file it did not make: %v", err)
	}
}
