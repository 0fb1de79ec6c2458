package bundle_test

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/storage/bundle"
)

// FuzzExtract checks that no archive, however made, panics Extract or
// writes outside its folder, and that a failed Extract leaves nothing.
// Seeds are a bundle and hostile tars.
func FuzzExtract(f *testing.F) {
	f.Add(pack(f, makeTree(f, winpe)))
	for _, hdr := range []*tar.Header{
		{Typeflag: tar.TypeReg, Name: "../evil", Size: 1},
		{Typeflag: tar.TypeSymlink, Name: "a", Linkname: "/"},
		{Typeflag: tar.TypeReg, Name: "a/../../b", Size: 1},
		{Typeflag: tar.TypeDir, Name: "d/"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(hdr)
		tw.Write(make([]byte, hdr.Size))
		tw.Close()
		f.Add(buf.Bytes())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "out")
		err := bundle.Extract(dest, func(w io.Writer) error { _, err := w.Write(data); return err })
		left, _ := os.ReadDir(parent)
		switch {
		case err == nil && (len(left) != 1 || left[0].Name() != "out"):
			t.Fatalf("Extract succeeded and left %v, want only out", left)
		case err != nil && len(left) != 0:
			t.Fatalf("Extract = %v and left %v, want nothing", err, left)
		}
	})
}
