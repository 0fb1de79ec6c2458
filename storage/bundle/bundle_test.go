package bundle_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage/bundle"
)

// makeTree writes files (slash paths to contents) under a new folder.
func makeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func pack(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.Write(&buf, dir); err != nil {
		t.Fatalf("Write(%s) = %v", dir, err)
	}
	return buf.Bytes()
}

// readTree returns every file under dir as slash path -> contents, and
// folders as path -> "/".
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[filepath.ToSlash(rel)] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var winpe = map[string]string{
	"EFI/Boot/bootx64.efi":        "MZ efi",
	"sources/boot.wim":            "MSWIM",
	"bootmgr.efi":                 "mgr",
	"en-us/bootmgr.efi.mui":       "mui",
	"Boot/Fonts/segoe_slboot.ttf": strings.Repeat("font", 3000),
	"a.txt":                       "a dot file sorts before the a folder",
	"a/b":                         "b",
	"deep/" + strings.Repeat("long-folder-name/", 8) + "dröm ünïcode.inf": "a name ustar cannot hold",
	"empty": "",
}

func TestWriteIsDeterministic(t *testing.T) {
	dir := makeTree(t, winpe)
	first := pack(t, dir)
	// Times, modes and the order files were made in do not matter.
	again := makeTree(t, winpe)
	filepath.WalkDir(again, func(p string, d fs.DirEntry, err error) error {
		os.Chtimes(p, time.Now(), time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
		if !d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return err
	})
	if second := pack(t, again); !bytes.Equal(first, second) {
		t.Fatalf("the same folder packed twice gave different bytes (%d and %d)", len(first), len(second))
	}
}

// TestGNUTarReadsBundles checks the archive with a tool this project did
// not write: GNU tar lists fixed owners, modes and times, and extracts the
// same files.
func TestGNUTarReadsBundles(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("tar not found: install Debian's tar")
	}
	dir := makeTree(t, winpe)
	archive := filepath.Join(t.TempDir(), "b.tar")
	if err := os.WriteFile(archive, pack(t, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tar", "--list", "--verbose", "--numeric-owner", "--utc", "-f", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("tar --list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, line := range lines {
		if !strings.Contains(line, " 0/0 ") || !strings.Contains(line, "1970-01-01 00:00") ||
			!(strings.HasPrefix(line, "-rw-r--r-- ") || strings.HasPrefix(line, "drwxr-xr-x ")) {
			t.Errorf("tar lists %q, want owner 0/0, mode 0644 or 0755, time 1970-01-01 00:00", line)
		}
	}
	var order []string
	for _, line := range lines {
		if f := strings.Fields(line); f[len(f)-1] == "a/" || f[len(f)-1] == "a/b" || f[len(f)-1] == "a.txt" {
			order = append(order, f[len(f)-1])
		}
	}
	if strings.Join(order, " ") != "a/ a/b a.txt" {
		t.Errorf("tar lists %v, want a/ a/b a.txt (names in lexical order, a folder before what it holds)", order)
	}
	extracted := t.TempDir()
	if out, err := exec.Command("tar", "-xf", archive, "-C", extracted).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	if got, want := readTree(t, extracted), readTree(t, dir); !equalTrees(got, want) {
		t.Errorf("tar extracted %v, want %v", got, want)
	}
}

func equalTrees(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestExtractRoundTrip(t *testing.T) {
	dir := makeTree(t, winpe)
	data := pack(t, dir)
	dest := filepath.Join(t.TempDir(), "out")
	if err := bundle.Extract(dest, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		t.Fatal(err)
	}
	if got, want := readTree(t, dest), readTree(t, dir); !equalTrees(got, want) {
		t.Errorf("Extract gave %v, want %v", got, want)
	}
	if err := bundle.Extract(dest, func(w io.Writer) error { return nil }); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Extract into an existing folder = %v, want fs.ErrExist", err)
	}
}

func TestWriteRefusesLinksAndSpecialFiles(t *testing.T) {
	for name, mk := range map[string]func(string) error{
		"drv/link.inf is a symbolic link": func(p string) error { return os.Symlink("a.inf", p) },
		"drv/pipe is a named pipe (FIFO)": func(p string) error { return syscall.Mkfifo(p, 0o600) },
	} {
		dir := makeTree(t, map[string]string{"drv/a.inf": "x"})
		if err := mk(filepath.Join(dir, "drv", strings.Fields(name)[0][len("drv/"):])); err != nil {
			t.Fatal(err)
		}
		err := bundle.Write(io.Discard, dir)
		if err == nil || !strings.Contains(err.Error(), name+"; a bundle holds only folders and regular files") {
			t.Errorf("Write of a folder where %s = %v, want it refused, saying so", name, err)
		}
	}
}

func TestExtractRefusesHostileArchives(t *testing.T) {
	for name, hdr := range map[string]*tar.Header{
		"parent":   {Typeflag: tar.TypeReg, Name: "../evil.inf", Size: 1},
		"absolute": {Typeflag: tar.TypeReg, Name: "/etc/evil", Size: 1},
		"symlink":  {Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc"},
		"device":   {Typeflag: tar.TypeChar, Name: "tty"},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(hdr)
			tw.Write(make([]byte, hdr.Size))
			tw.Close()
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			err := bundle.Extract(dest, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err })
			if !errors.Is(err, bundle.ErrNotBundle) {
				t.Errorf("Extract(%s) = %v, want ErrNotBundle", hdr.Name, err)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("a refused archive left %v behind", left)
			}
		})
	}
}

func TestExtractReportsSourceErrors(t *testing.T) {
	data := pack(t, makeTree(t, winpe))
	bad := errors.New("chunk 3 is corrupt")
	dest := filepath.Join(t.TempDir(), "out")
	err := bundle.Extract(dest, func(w io.Writer) error {
		w.Write(data[:len(data)/2])
		return bad
	})
	if !errors.Is(err, bad) {
		t.Errorf("Extract with a failing source = %v, want its error", err)
	}
	if _, serr := os.Stat(dest); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("a failed Extract left %s: %v", dest, serr)
	}
}
