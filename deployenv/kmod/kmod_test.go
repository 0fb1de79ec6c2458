package kmod_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/deployenv/kmod"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestResolveMatchesModprobe: against the real modules tree of Debian's
// kernel, each of the deploy environment's default modules resolves to
// exactly the files modprobe --show-depends names (hard and soft
// dependencies, aliases such as crct10dif resolved), and in the whole
// resolution every module comes after each module it needs.
func TestResolveMatchesModprobe(t *testing.T) {
	k := testenv.DebianKernel(t)
	tree, err := kmod.Open(k.Modules)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range deployenv.DefaultModules {
		res, err := tree.Resolve([]string{name})
		if err != nil {
			t.Fatalf("Resolve(%s) = %v", name, err)
		}
		var got []string
		for _, m := range res.Modules {
			got = append(got, m.Path)
		}
		slices.Sort(got)
		want := modprobeFiles(t, k, name)
		if !slices.Equal(got, want) {
			t.Errorf("Resolve(%s) = %v,\nwant (modprobe --show-depends) %v", name, got, want)
		}
	}
	res, err := tree.Resolve(deployenv.DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, k, res)
}

// modprobeFiles are the module files modprobe would load for name,
// relative to the tree, sorted, each once.
func modprobeFiles(t *testing.T, k deployenv.Kernel, name string) []string {
	t.Helper()
	out := testenv.Run(t, "kmod", "modprobe", "--show-depends", "--set-version="+k.Release, "--dirname=/", name)
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "insmod" {
			continue // builtin NAME
		}
		rel, err := filepath.Rel(k.Modules, f[1])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(files, rel) {
			files = append(files, rel)
		}
	}
	slices.Sort(files)
	return files
}

// checkOrder checks that every module in res comes after the modules it
// needs and the "pre" soft dependencies modprobe loads before it.
func checkOrder(t *testing.T, k deployenv.Kernel, res kmod.Resolution) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range res.Modules {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("module %s is in the resolution twice", m.Name)
		}
		pos[m.Name] = i
	}
	for i, m := range res.Modules {
		for _, d := range m.Deps {
			if j, ok := pos[d]; !ok {
				t.Errorf("module %s needs %s, which is not in the resolution", m.Name, d)
			} else if j > i {
				t.Errorf("module %s (at %d) needs %s, which comes later (at %d)", m.Name, i, d, j)
			}
		}
	}
	// The soft dependencies of this kernel that matter to laptops: the
	// Realtek PHY driver before r8169 (without it r8169 finds no PHY).
	if pos["realtek"] > pos["r8169"] {
		t.Errorf("realtek (softdep pre of r8169) at %d, after r8169 at %d", pos["realtek"], pos["r8169"])
	}
	for _, m := range []string{"realtek", "crct10dif_generic", "virtio_pci", "xhci_pci"} {
		if _, ok := pos[m]; !ok {
			t.Errorf("%s is not in the resolution of the default modules", m)
		}
	}
}

// TestResolveRefusesUnknownAndReportsBuiltin: a name that is neither a
// module nor built in is refused, naming it; a built-in one is reported,
// not loaded.
func TestResolveRefusesUnknownAndReportsBuiltin(t *testing.T) {
	tree := fakeTree(t, map[string]string{"kernel/a.ko": "a"}, "kernel/a.ko:\n", "kernel/lib/crc32.ko\n")
	_, err := tree.Resolve([]string{"a", "no-such-driver"})
	if !errors.Is(err, kmod.ErrNoModule) || !strings.Contains(err.Error(), "no module no_such_driver, and it is not built in") {
		t.Errorf("Resolve(unknown) = %v, want ErrNoModule naming no_such_driver", err)
	}
	res, err := tree.Resolve([]string{"crc32", "a"})
	if err != nil || !slices.Equal(res.Builtin, []string{"crc32"}) || len(res.Modules) != 1 {
		t.Errorf("Resolve(crc32, a) = %+v, %v; want crc32 built in and a to load", res, err)
	}
}

// TestReadDecompresses: a module compressed with xz, zstd or gzip reads
// as its uncompressed bytes, and the environment's modules.dep names it
// uncompressed.
func TestReadDecompresses(t *testing.T) {
	body := bytes.Repeat([]byte("\x7fELF module body with its signature appended~Module signature appended~\n"), 1000)
	files := map[string]string{
		"kernel/plain.ko":       string(body),
		"kernel/x/xzed.ko.xz":   compress(t, "xz", body),
		"kernel/z/zsted.ko.zst": compress(t, "zst", body),
		"kernel/g/gzed.ko.gz":   compress(t, "gz", body),
	}
	dep := "kernel/x/xzed.ko.xz: kernel/z/zsted.ko.zst kernel/g/gzed.ko.gz\nkernel/z/zsted.ko.zst: kernel/plain.ko\nkernel/g/gzed.ko.gz:\nkernel/plain.ko:\n"
	tree := fakeTree(t, files, dep, "")
	res, err := tree.Resolve([]string{"xzed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Modules {
		got, err := tree.Read(m.Path)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("Read(%s) = %d bytes, %v; want the %d uncompressed bytes", m.Path, len(got), err, len(body))
		}
	}
	wantDep := "kernel/plain.ko:\nkernel/z/zsted.ko: kernel/plain.ko\nkernel/g/gzed.ko:\nkernel/x/xzed.ko: kernel/z/zsted.ko kernel/g/gzed.ko\n"
	if got := string(res.DepFile()); got != wantDep {
		t.Errorf("DepFile() =\n%s\nwant\n%s", got, wantDep)
	}
}

func compress(t *testing.T, kind string, data []byte) string {
	t.Helper()
	var b bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	var err error
	switch kind {
	case "xz":
		w, err = xz.NewWriter(&b)
	case "zst":
		w, err = zstd.NewWriter(&b)
	case "gz":
		w = gzip.NewWriter(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// fakeTree makes a modules tree with files, modules.dep and
// modules.builtin.
func fakeTree(t *testing.T, files map[string]string, dep, builtin string) *kmod.Tree {
	t.Helper()
	dir := t.TempDir()
	files["modules.dep"], files["modules.builtin"] = dep, builtin
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := kmod.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
