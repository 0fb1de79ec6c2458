package catalog_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/internal/sample"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

var benchSize = flag.Int64("bench.size", 256<<20, "size of the disk-shaped image the benchmarks push and pull")

// benchImage writes a disk-shaped image file of *benchSize bytes.
func benchImage(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := sample.WriteDiskImage(f, *benchSize, 42); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return p
}

func benchCatalog(b *testing.B) *catalog.Catalog {
	b.Helper()
	s, err := storage.NewFileStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	c, err := catalog.New(s, catalog.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkPush pushes the image into an empty file store each iteration.
func BenchmarkPush(b *testing.B) {
	img := benchImage(b)
	b.SetBytes(*benchSize)
	for i := 0; b.Loop(); i++ {
		c := benchCatalog(b)
		if _, err := c.PushFile(b.Context(), img, catalog.PushOptions{Name: "bench", Version: "1", Kind: catalog.KindDisk}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPull streams the image out of a file store, verified, to nowhere.
func BenchmarkPull(b *testing.B) {
	img := benchImage(b)
	c := benchCatalog(b)
	res, err := c.PushFile(b.Context(), img, catalog.PushOptions{Name: "bench", Version: "1", Kind: catalog.KindDisk})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(*benchSize)
	for b.Loop() {
		if err := c.Pull(b.Context(), res.Manifest, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}
