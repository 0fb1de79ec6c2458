package fatdisk_test

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/media/fatdisk"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var opts = fatdisk.Options{Label: "IMAGEFARM", VolumeID: 0x1234abcd, DiskID: 0xfeed0042, Time: time.Date(2026, 11, 3, 10, 20, 30, 0, time.UTC)}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testFiles is a volume with what USB media hold: long, short, accented,
// case-only-different and numbered names, empty files and folders, and a
// file on disk that spans many clusters.
func testFiles(t *testing.T) []fatdisk.File {
	t.Helper()
	big := filepath.Join(t.TempDir(), "install.wim")
	if err := os.WriteFile(big, randomBytes(1, 3<<20+17), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []fatdisk.File{
		{Path: "EFI/Boot/bootx64.efi", Data: []byte("MZ efi")},
		{Path: "sources/boot.wim", Data: randomBytes(2, 70000)},
		{Path: "images/install.wim", Source: big},
		{Path: "README.TXT", Data: []byte("an 8.3 name in capitals needs no long name")},
		{Path: "deploy.cmd", Data: []byte("@echo off\r\n")},
		{Path: "empty.txt"},
		{Path: "logs", Dir: true},
		{Path: "drivers/Latitude 7440/dröm ünïcode.sys", Data: []byte("accents")},
		{Path: "drivers/Latitude 7440/.hidden-name", Data: []byte("dot first")},
		{Path: "drivers/Latitude 7440/" + strings.Repeat("n", 200) + ".inf", Data: []byte("a long name of many entries")},
	}
	for i := range 12 { // LONGNA~1 to ~9, then LONGN~10
		files = append(files, fatdisk.File{Path: "drivers/Latitude 7440/net/longname-" + strings.Repeat("x", i) + ".inf", Data: []byte{byte(i)}})
	}
	return files
}

func writeImage(t *testing.T, files []fatdisk.File, o fatdisk.Options) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "media.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := fatdisk.Write(f, files, o)
	if err != nil {
		t.Fatalf("Write = %v", err)
	}
	if fi, _ := f.Stat(); fi.Size() != n {
		t.Fatalf("Write returned %d, wrote %d bytes", n, fi.Size())
	}
	return p
}

// TestToolsReadTheImage checks the image with sfdisk, fsck.vfat and mtools.
func TestToolsReadTheImage(t *testing.T) {
	files := testFiles(t)
	img := writeImage(t, files, opts)
	checkImage(t, img, files)
	listing := testenv.ReadFATImage(t, img).Dir(t, "/")
	if !strings.Contains(listing, "IMAGEFARM") || !strings.Contains(listing, "1234-ABCD") {
		t.Errorf("mdir shows no label IMAGEFARM and serial 1234-ABCD:\n%s", listing)
	}
	if !strings.Contains(listing, "2026-11-03  10:20") {
		t.Errorf("mdir shows other times than the one asked for:\n%s", listing)
	}
}

// TestLargeClusters covers a volume over 260 MiB, which has 4 KiB clusters.
func TestLargeClusters(t *testing.T) {
	sparse := filepath.Join(t.TempDir(), "sparse.bin")
	if err := os.WriteFile(sparse, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 264<<20); err != nil {
		t.Fatal(err)
	}
	files := []fatdisk.File{{Path: "big/zeros.bin", Source: sparse}, {Path: "small.txt", Data: []byte("x")}}
	img := writeImage(t, files, opts)
	if out := checkImage(t, img, files); !strings.Contains(out, "4096 bytes per cluster") {
		t.Errorf("fsck.vfat -v says\n%s\nwant 4096 bytes per cluster for a volume over 260 MiB", out)
	}
}

// checkImage checks img's table and file system and that mcopy reads
// back exactly files; it returns what fsck.vfat -v said.
func checkImage(t *testing.T, img string, files []fatdisk.File) string {
	t.Helper()
	im := testenv.ReadFATImage(t, img)
	fi, _ := os.Stat(img)
	if im.Type != "c" || !im.Bootable || im.Offset != fatdisk.PartitionStart || im.Offset+im.Size != fi.Size() || im.DiskID != "0xfeed0042" {
		t.Errorf("sfdisk reads %+v, want one bootable type c partition from 1 MiB to the end of the %d-byte image, disk id 0xfeed0042", im, fi.Size())
	}
	fsck := im.Fsck(t)
	out := im.CopyOut(t)
	for _, f := range files {
		p := filepath.Join(out, filepath.FromSlash(f.Path))
		if f.Dir {
			if st, err := os.Stat(p); err != nil || !st.IsDir() {
				t.Errorf("mcopy did not copy the folder %s: %v", f.Path, err)
			}
			continue
		}
		want := f.Data
		if f.Source != "" {
			want, _ = os.ReadFile(f.Source)
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Errorf("mcopy read %s as %d bytes (%v), want the %d written", f.Path, len(got), err, len(want))
		}
	}
	return fsck
}

func TestWriteIsDeterministic(t *testing.T) {
	files := testFiles(t)
	first, _ := os.ReadFile(writeImage(t, files, opts))
	shuffled := append([]fatdisk.File(nil), files...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if second, _ := os.ReadFile(writeImage(t, shuffled, opts)); !bytes.Equal(first, second) {
		t.Errorf("the same files listed in another order gave other bytes")
	}
	other := opts
	other.VolumeID++
	if third, _ := os.ReadFile(writeImage(t, files, other)); bytes.Equal(first, third) {
		t.Errorf("another volume id gave the same bytes")
	}
}

func TestWriteRefuses(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge.wim")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 4<<30); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		files []fatdisk.File
		want  string
	}{
		{[]fatdisk.File{{Path: "images/install.wim", Source: huge}}, "images/install.wim is 4294967296 bytes; a FAT32 file holds at most 4 GiB - 1 byte"},
		{[]fatdisk.File{{Path: "Drivers/a.inf"}, {Path: "drivers/A.INF"}}, `the folder already has "a.inf"`},
		{[]fatdisk.File{{Path: "deploy.cmd"}, {Path: "deploy.cmd/x"}}, `the folder already has "deploy.cmd"`},
		{[]fatdisk.File{{Path: "a:b.txt"}}, "a character FAT32 forbids"},
		{[]fatdisk.File{{Path: "trailing."}}, "ends in a dot or space"},
		{[]fatdisk.File{{Path: "../up"}}, "not a clean relative path"},
		{[]fatdisk.File{{Path: "/abs"}}, "not a clean relative path"},
		{[]fatdisk.File{{Path: strings.Repeat("n", 256)}}, "longer than 255 UTF-16 units"},
	} {
		var buf bytes.Buffer
		_, err := fatdisk.Write(&buf, tc.files, opts)
		if !errors.Is(err, fatdisk.ErrBadFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Write(%v) = %v, want ErrBadFile saying %q", tc.files[len(tc.files)-1].Path, err, tc.want)
		}
		if buf.Len() != 0 {
			t.Errorf("Write(%v) wrote %d bytes before refusing", tc.files[len(tc.files)-1].Path, buf.Len())
		}
	}
	if _, err := fatdisk.Write(new(bytes.Buffer), nil, fatdisk.Options{Label: "lower"}); err == nil {
		t.Errorf("Write with label %q = nil, want an error", "lower")
	}
	if _, err := fatdisk.Write(new(bytes.Buffer), []fatdisk.File{{Path: "x", Source: "/nonexistent"}}, opts); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write of a missing source = %v, want fs.ErrNotExist", err)
	}
}
