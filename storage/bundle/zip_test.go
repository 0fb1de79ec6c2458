package bundle_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/bundle"
)

// TestWriteZipIsTheFolderBundle zips a folder with Info-ZIP's zip and
// wants WriteZip to give the bundle of the folder, byte for byte.
func TestWriteZipIsTheFolderBundle(t *testing.T) {
	if _, err := exec.LookPath("zip"); err != nil {
		t.Fatal("zip not found: install Debian's zip (scripts/test.sh does)")
	}
	dir := makeTree(t, winpe)
	if err := os.Mkdir(filepath.Join(dir, "empty-folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "recovery.zip")
	cmd := exec.Command("zip", "-r", "-q", archive, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zip: %v\n%s", err, out)
	}
	z, err := zip.OpenReader(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var got bytes.Buffer
	if err := bundle.WriteZip(&got, &z.Reader); err != nil {
		t.Fatal(err)
	}
	if want := pack(t, dir); !bytes.Equal(got.Bytes(), want) {
		t.Errorf("WriteZip of the zipped folder gave %d bytes, the folder's bundle is %d", got.Len(), len(want))
	}
}

// TestWriteZipRefuses: entries that would leave the folder, links,
// encrypted entries and names twice are refused, writing nothing.
func TestWriteZipRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []zip.FileHeader
		want    string
	}{
		{"dot-dot", []zip.FileHeader{{Name: "sources/../../evil.efi"}}, `entry "sources/../../evil.efi" has a ".." element, which leaves the folder`},
		{"dot-dot inside", []zip.FileHeader{{Name: "a/../b"}}, `has a ".." element`},
		{"absolute", []zip.FileHeader{{Name: "/etc/passwd"}}, `entry "/etc/passwd" is an absolute path`},
		{"backslash absolute", []zip.FileHeader{{Name: `\Windows\x.dll`}}, "is an absolute path"},
		{"drive letter", []zip.FileHeader{{Name: "C:/boot.ini"}}, "is an absolute path"},
		{"backslash dot-dot", []zip.FileHeader{{Name: `efi\..\..\x`}}, `has a ".." element`},
		{"stream name", []zip.FileHeader{{Name: "a.txt:hidden"}}, "a character Windows names cannot hold"},
		{"symlink", []zip.FileHeader{{Name: "link", ExternalAttrs: uint32(0o120777) << 16, CreatorVersion: 3 << 8}}, `entry "link" is a symbolic link`},
		{"encrypted", []zip.FileHeader{{Name: "secret.bin", Flags: 0x1}}, "is encrypted"},
		{"twice by case", []zip.FileHeader{{Name: "EFI/Boot/bootx64.efi"}, {Name: "efi/boot/BOOTX64.EFI"}}, "name one file on Windows, which ignores case"},
		{"twice", []zip.FileHeader{{Name: "a"}, {Name: "a"}}, `entry "a" names a twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var zbuf bytes.Buffer
			zw := zip.NewWriter(&zbuf)
			for _, h := range tc.entries {
				w, err := zw.CreateHeader(&h)
				if err != nil {
					t.Fatal(err)
				}
				w.Write([]byte("data"))
			}
			zw.Close()
			z, err := zip.NewReader(bytes.NewReader(zbuf.Bytes()), int64(zbuf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = bundle.WriteZip(&out, z)
			if !errors.Is(err, bundle.ErrBadZip) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WriteZip = %v, want %v saying %q", err, bundle.ErrBadZip, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("a refused zip wrote %d bytes", out.Len())
			}
		})
	}
}
