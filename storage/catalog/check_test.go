package catalog_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// TestCheckBytes: the image's own bytes check; a byte changed in a data
// chunk or in a zero chunk is a *ChunkError naming that chunk; bytes that
// end early or go on are ErrSizeMismatch.
func TestCheckBytes(t *testing.T) {
	c, _ := fileCatalog(t)
	data := diskImage(t, 4*testChunk, 1)
	clear(data[2*testChunk : 3*testChunk]) // chunk 2 is a zero chunk
	m := push(t, c, "img:1", data, catalog.PushOptions{}).Manifest
	if !m.Chunks[2].Zero {
		t.Fatal("chunk 2 is not a zero chunk")
	}
	if err := m.CheckBytes(bytes.NewReader(data)); err != nil {
		t.Fatalf("CheckBytes(the image) = %v", err)
	}
	for _, at := range []int{1, 2} {
		bad := bytes.Clone(data)
		bad[at*testChunk+7] ^= 1
		var ce *catalog.ChunkError
		err := m.CheckBytes(bytes.NewReader(bad))
		if !errors.As(err, &ce) || ce.Index != at || !errors.Is(err, catalog.ErrCorruptChunk) {
			t.Errorf("CheckBytes(a byte changed in chunk %d) = %v, want a ChunkError for chunk %d", at, err, at)
		}
	}
	for _, b := range [][]byte{data[:len(data)-1], append(bytes.Clone(data), 0)} {
		if err := m.CheckBytes(bytes.NewReader(b)); !errors.Is(err, catalog.ErrSizeMismatch) {
			t.Errorf("CheckBytes(%d bytes of %d) = %v, want ErrSizeMismatch", len(b), len(data), err)
		}
	}
}
