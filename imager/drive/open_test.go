package drive

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
	"golang.org/x/sys/unix"
)

// identityFields returns the fields an *IdentityError names, failing the
// test if err is not one.
func identityFields(t *testing.T, err error) map[string]Mismatch {
	t.Helper()
	var ie *IdentityError
	if !errors.Is(err, ErrIdentityChanged) || !errors.As(err, &ie) {
		t.Fatalf("err = %v, want an *IdentityError", err)
	}
	fields := map[string]Mismatch{}
	for _, m := range ie.Mismatches {
		fields[m.Field] = m
	}
	return fields
}

func TestReverifyResized(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 32<<20)
	planned := discovered(t, Config{}, l.Path)
	if now, err := Reverify(planned, Config{}); err != nil || now.ID != planned.ID {
		t.Fatalf("Reverify() of an unchanged drive = %+v, %v", now, err)
	}

	if err := os.Truncate(l.Backing, 48<<20); err != nil {
		t.Fatal(err)
	}
	testenv.Command(t, "losetup", "-c", l.Path) // the loop device takes the new size
	_, err := Reverify(planned, Config{})
	m, ok := identityFields(t, err)["size"]
	if !ok || m.Got != "48 MiB (50331648 bytes)" || m.Want != "32 MiB (33554432 bytes)" {
		t.Errorf("Reverify() after resize = %v, want size 48 MiB, want 32 MiB", err)
	}

	// Opening by the stale plan is refused as well: the open checks the
	// size of what it opened.
	if f, _, err := OpenExclusive(planned); err == nil {
		f.Close()
		t.Errorf("OpenExclusive() with the size planned before the resize succeeded")
	} else {
		identityFields(t, err)
	}
}

// loopChangeFD is LOOP_CHANGE_FD from linux/loop.h: it swaps the file
// behind a read-only loop device for another of the same size, without
// releasing the device to another test meanwhile.
const loopChangeFD = 0x4C06

func TestReverifySwappedBackingFile(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 32<<20, "--read-only")
	planned := discovered(t, Config{}, l.Path)

	other := filepath.Join(t.TempDir(), "other.img")
	if err := os.Truncate(makeFile(t, other), 32<<20); err != nil {
		t.Fatal(err)
	}
	swapBacking(t, l.Path, other)
	l.Backing = other // what cleanup waits to see detached

	_, err := Reverify(planned, Config{})
	fields := identityFields(t, err)
	if fields["backing file"].Got != other || fields["id"].Want != planned.ID {
		t.Errorf("Reverify() after swapping the backing file = %v, want backing file and id named", err)
	}
	if _, ok := fields["size"]; ok {
		t.Errorf("Reverify() = %v: size did not change", err)
	}
}

func swapBacking(t *testing.T, dev, file string) {
	t.Helper()
	lf, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	ff, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	if err := unix.IoctlSetInt(int(lf.Fd()), loopChangeFD, int(ff.Fd())); err != nil {
		t.Fatalf("LOOP_CHANGE_FD %s to %s: %v", dev, file, err)
	}
}

func TestReverifyGone(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 8<<20)
	planned := discovered(t, Config{}, l.Path)
	l.Detach(t)
	backing := func() string { return attr(filepath.Join("/sys/block", filepath.Base(l.Path)), "loop/backing_file") }
	before := backing()
	_, err := Reverify(planned, Config{})
	switch after := backing(); {
	case before == "" && after == "":
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Reverify() of a detached loop device = %v, want ErrNotFound", err)
		}
	case before != "" && after == before: // another test bound the freed number: a different drive
		if !errors.Is(err, ErrIdentityChanged) {
			t.Errorf("Reverify() of %s, now backed by %s = %v, want ErrIdentityChanged", l.Path, after, err)
		}
	default: // bound again while Reverify looked: either answer is right, but not success
		if err == nil {
			t.Errorf("Reverify() of a detached loop device succeeded")
		}
	}
}

func TestOpenExclusiveBlock(t *testing.T) {
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, 16<<20)
	d := discovered(t, Config{}, l.Path)
	f, direct, err := OpenExclusive(d)
	if err != nil {
		t.Fatalf("OpenExclusive() = %v", err)
	}
	defer f.Close()
	if !direct {
		t.Errorf("OpenExclusive() of a loop device: direct = false, want O_DIRECT")
	}
	if g, _, err := OpenExclusive(d); !errors.Is(err, ErrBusy) {
		if g != nil {
			g.Close()
		}
		t.Errorf("second OpenExclusive() = %v, want ErrBusy", err)
	}
	if err := CheckExclusive(d); !errors.Is(err, ErrBusy) {
		t.Errorf("CheckExclusive() while held = %v, want ErrBusy", err)
	}
	r, direct, err := OpenRead(d) // read-back while the writer holds it
	if err != nil || !direct {
		t.Fatalf("OpenRead() while held = direct %v, %v; want O_DIRECT", direct, err)
	}
	r.Close()
	f.Close()
	if err := CheckExclusive(d); err != nil {
		t.Errorf("CheckExclusive() of a free drive = %v", err)
	}
	if g, _, err := OpenExclusive(d); err != nil { // CheckExclusive let it go
		t.Errorf("OpenExclusive() after CheckExclusive() = %v", err)
	} else {
		g.Close()
	}
}

func TestOpenExclusiveVirtual(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	drives, err := discoverVirtual(dir)
	if err != nil || len(drives) != 1 {
		t.Fatalf("discoverVirtual() = %v, %v", drives, err)
	}
	d := drives[0]
	f, _, err := OpenExclusive(d)
	if err != nil {
		t.Fatalf("OpenExclusive() = %v", err)
	}
	if g, _, err := OpenExclusive(d); !errors.Is(err, ErrBusy) {
		if g != nil {
			g.Close()
		}
		t.Errorf("second OpenExclusive() of a virtual drive = %v, want ErrBusy", err)
	}
	f.Close()
	if g, _, err := OpenExclusive(d); err != nil {
		t.Errorf("OpenExclusive() after the first writer closed = %v", err)
	} else {
		g.Close()
	}

	// A symlink to a real device must not pass for a virtual drive.
	link := filepath.Join(dir, "link")
	os.Symlink("/dev/null", link)
	fake := d
	fake.Path = link
	if g, _, err := OpenExclusive(fake); err == nil {
		g.Close()
		t.Errorf("OpenExclusive() of a symlink posing as a virtual drive succeeded")
	}

	if err := os.Truncate(path, 2<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := Reverify(d, Config{}); err == nil {
		t.Errorf("Reverify() of a grown virtual drive succeeded")
	} else {
		identityFields(t, err)
	}
}
