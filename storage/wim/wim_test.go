package wim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage/wim"
)

// image is one image of a fixture: the first is captured, the rest appended.
type image struct {
	name, desc string
	opts       []string // --compress, --boot, --image-property and the like
}

// fixture is a WIM that wimlib writes at test time.
type fixture struct {
	name   string
	images []image
	// randomKiB is the size of each of the three incompressible files in
	// every image's tree, so that a split has something to split.
	randomKiB int
	// splitMB, if set, splits the WIM into parts of at most that size.
	splitMB string
}

// prop returns the option that sets an image property.
func prop(name, value string) string { return "--image-property=" + name + "=" + value }

// windows11Pro carries the properties DISM writes for a Windows image.
var windows11Pro = []string{
	prop("WINDOWS/EDITIONID", "Professional"),
	prop("WINDOWS/ARCH", "9"),
	prop("WINDOWS/VERSION/MAJOR", "10"),
	prop("WINDOWS/VERSION/MINOR", "0"),
	prop("WINDOWS/VERSION/BUILD", "22631"),
	prop("WINDOWS/VERSION/SPBUILD", "2861"),
	prop("WINDOWS/PRODUCTNAME", "Microsoft® Windows® Operating System"),
	prop("WINDOWS/INSTALLATIONTYPE", "Client"),
	prop("WINDOWS/LANGUAGES/LANGUAGE", "en-US"),
	prop("WINDOWS/LANGUAGES/LANGUAGE[2]", "de-DE"),
	prop("WINDOWS/LANGUAGES/DEFAULT", "en-US"),
	prop("DISPLAYNAME", "Windows 11 Pro"),
	prop("FLAGS", "Professional"),
}

var fixtures = []fixture{{
	name: "lzx three images",
	images: []image{
		{"Windows 11 Pro", "Windows 11 Pro for x64", append([]string{"--compress=LZX"}, windows11Pro...)},
		{"Windows 11 Home", "", []string{
			prop("WINDOWS/EDITIONID", "Core"), prop("WINDOWS/ARCH", "12"),
			prop("WINDOWS/VERSION/MAJOR", "10"), prop("WINDOWS/VERSION/MINOR", "0"),
			prop("WINDOWS/VERSION/BUILD", "26100"),
		}},
		{"Wïndows ✓ 🪟 data", "no WINDOWS element, a name beyond the BMP", nil},
	},
}, {
	name: "xpress bootable",
	images: []image{
		{"Microsoft Windows PE (x86)", "WinPE", []string{"--compress=XPRESS", "--boot",
			prop("WINDOWS/EDITIONID", "WindowsPE"), prop("WINDOWS/ARCH", "0")}},
		{"Microsoft Windows Setup (arm)", "", []string{prop("WINDOWS/ARCH", "5")}},
	},
}, {
	name:   "uncompressed",
	images: []image{{"Itanium", "", []string{"--compress=none", prop("WINDOWS/ARCH", "6")}}},
}, {
	name:   "lzms solid",
	images: []image{{"ESD", "", []string{"--compress=LZMS", "--solid"}}},
}, {
	name:   "pipable",
	images: []image{{"Pipable", "", []string{"--pipable", prop("WINDOWS/ARCH", "9")}}},
}, {
	name: "split xpress",
	images: []image{
		{"Big", "", append([]string{"--compress=XPRESS"}, windows11Pro...)},
		{"Small", "", nil},
	},
	randomKiB: 150,
	splitMB:   "0.1",
}}

// TestReadMatchesWimlib checks that Read reports what wimlib-imagex info
// says about files that wimlib wrote.
func TestReadMatchesWimlib(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			t.Parallel()
			paths := fx.build(t)
			var parts []int
			for _, path := range paths {
				got, want := readFile(t, path), wimlibInfo(t, path)
				if !reflect.DeepEqual(truncated(got), want) {
					t.Errorf("Read(%s) = %s, want %s", filepath.Base(path), toJSON(t, got), toJSON(t, want))
				}
				if got.ImageCount != len(fx.images) || len(got.Images) != len(fx.images) {
					t.Errorf("Read(%s) has %d images (count %d), want %d",
						filepath.Base(path), len(got.Images), got.ImageCount, len(fx.images))
				}
				parts = append(parts, got.Part)
			}
			checkParts(t, fx, paths, parts)
		})
	}
}

// checkParts checks that a split WIM has parts 1 to n, each once, and that
// other WIMs are part 1 of 1.
func checkParts(t *testing.T, fx fixture, paths []string, parts []int) {
	t.Helper()
	if fx.splitMB != "" && len(paths) < 2 {
		t.Fatalf("split into %d parts, want at least 2", len(paths))
	}
	seen := make(map[int]bool)
	for _, p := range parts {
		seen[p] = true
	}
	for n := 1; n <= len(paths); n++ {
		if !seen[n] {
			t.Errorf("parts %v, want 1 to %d", parts, len(paths))
		}
	}
}

// TestReadWindowsImage checks the fields of a Windows-like image against
// literal values, so that a mistake shared by Read and the parsing of
// wimlib's output cannot hide.
func TestReadWindowsImage(t *testing.T) {
	got := readFile(t, fixtures[0].build(t)[0])
	if got.Compression != "lzx" || got.ChunkSize != 32768 || got.Part != 1 || got.TotalParts != 1 {
		t.Errorf("Read = compression %q, chunk size %d, part %d of %d; want lzx, 32768, 1 of 1",
			got.Compression, got.ChunkSize, got.Part, got.TotalParts)
	}
	if len(got.Images) != 3 {
		t.Fatalf("Read has %d images, want 3", len(got.Images))
	}
	img := got.Images[0]
	if age := time.Since(img.CreatedAt); age < 0 || age > time.Hour {
		t.Errorf("Read image 1 created at %v, want about now", img.CreatedAt)
	}
	img.CreatedAt, img.DirCount, img.FileCount, img.TotalBytes = time.Time{}, 0, 0, 0
	want := wim.Image{
		Index: 1, Name: "Windows 11 Pro", Description: "Windows 11 Pro for x64",
		DisplayName: "Windows 11 Pro", Flags: "Professional", Edition: "Professional",
		Arch: "amd64", Build: "10.0.22631.2861",
		ProductName:      "Microsoft® Windows® Operating System",
		InstallationType: "Client",
		Languages:        []string{"en-US", "de-DE"}, DefaultLanguage: "en-US",
	}
	if !reflect.DeepEqual(img, want) {
		t.Errorf("Read image 1 = %s, want %s", toJSON(t, img), toJSON(t, want))
	}
	if g := got.Images[1]; g.Arch != "arm64" || g.Build != "10.0.26100.0" || g.Edition != "Core" {
		t.Errorf("Read image 2 = arch %q, build %q, edition %q; want arm64, 10.0.26100.0, Core", g.Arch, g.Build, g.Edition)
	}
	if g := got.Images[2]; g.Name != "Wïndows ✓ 🪟 data" || g.Arch != "" || g.Build != "" {
		t.Errorf("Read image 3 = name %q, arch %q, build %q; want Wïndows ✓ 🪟 data and no arch or build", g.Name, g.Arch, g.Build)
	}
}

// build writes the fixture with wimlib into a temporary directory and
// returns its file, or its parts in order.
func (fx fixture) build(t testing.TB) []string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "image.wim")
	for i, img := range fx.images {
		src := filepath.Join(dir, "src", strconv.Itoa(i))
		writeTree(t, src, uint64(i), fx.randomKiB)
		cmd := "append"
		if i == 0 {
			cmd = "capture"
		}
		args := []string{cmd, src, path, img.name}
		if img.desc != "" {
			args = append(args, img.desc)
		}
		wimlib(t, append(args, img.opts...)...)
	}
	if fx.splitMB == "" {
		return []string{path}
	}
	wimlib(t, "split", path, filepath.Join(dir, "part.swm"), fx.splitMB)
	parts, err := filepath.Glob(filepath.Join(dir, "part*.swm"))
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

// writeTree writes a small directory tree: text that compresses well, and
// three files of randomKiB random bytes each that do not.
func writeTree(t testing.TB, dir string, seed uint64, randomKiB int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	files := map[string][]byte{
		"Windows/System32/config.txt": []byte(strings.Repeat(fmt.Sprintf("line of tree %d\n", seed), 300)),
		"Users/Default/readme.txt":    []byte("hello from imagefarm\n"),
		"empty.txt":                   nil,
	}
	for i := range 3 {
		b := make([]byte, randomKiB<<10)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		files[fmt.Sprintf("data/random%d.bin", i)] = b
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// wimlib runs wimlib-imagex and returns its standard output.
func wimlib(t testing.TB, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("wimlib-imagex")
	if err != nil {
		t.Fatalf("wimlib-imagex is needed to write test WIMs: install Debian's wimtools (apt-get install wimtools): %v", err)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8") // image names are not ASCII
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wimlib-imagex %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// readFile calls Read on the file at path.
func readFile(t testing.TB, path string) *wim.Info {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	info, err := wim.Read(f, st.Size())
	if err != nil {
		t.Fatalf("Read(%s) = %v", filepath.Base(path), err)
	}
	return info
}

// truncated returns a copy of info with times cut to the second, the
// precision of wimlib-imagex info.
func truncated(info *wim.Info) *wim.Info {
	c := *info
	c.Images = append([]wim.Image(nil), info.Images...)
	for i := range c.Images {
		c.Images[i].CreatedAt = c.Images[i].CreatedAt.Truncate(time.Second)
	}
	return &c
}

// toJSON formats v for failure messages.
func toJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
