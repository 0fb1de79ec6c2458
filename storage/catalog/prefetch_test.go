package catalog_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// TestPrefetchBringsTheWholeImageIn: after Prefetch every stored chunk is in
// the cache, progress climbed to the image's size without going back, and
// the image then streams without one more read from the store.
func TestPrefetchBringsTheWholeImageIn(t *testing.T) {
	c, cache, cs, m, data := cachedCatalog(t, 1<<30)
	var last int64
	whole, err := c.Prefetch(t.Context(), m, func(done int64) {
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		last = done
	})
	if !whole || err != nil {
		t.Fatalf("Prefetch = %v, %v; want true, nil", whole, err)
	}
	if last != m.Size {
		t.Errorf("progress ended at %d, want the image's size %d", last, m.Size)
	}
	if st := cache.Stats(); st.Chunks != int(stored(m)) {
		t.Errorf("cache holds %d chunks, want %d", st.Chunks, stored(m))
	}
	opens := cs.opens.Load()
	var out bytes.Buffer
	if err := c.Pull(t.Context(), m, &out, nil); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Pull after Prefetch = %v (equal %v)", err, bytes.Equal(out.Bytes(), data))
	}
	if again, _ := c.Prefetch(t.Context(), m, nil); !again || cs.opens.Load() != opens {
		t.Errorf("pull and a second Prefetch read %d chunks from the store, want 0", cs.opens.Load()-opens)
	}
}

// TestPrefetchNamesATamperedChunk: a chunk the store serves damaged fails
// Prefetch with a ChunkError naming it, and is not cached.
func TestPrefetchNamesATamperedChunk(t *testing.T) {
	plain, dir := fileCatalog(t)
	m := push(t, plain, "tampered:1", diskImage(t, 24*testChunk, 3), catalog.PushOptions{}).Manifest
	bad := -1
	for i, ch := range m.Chunks {
		if !ch.Zero {
			bad = i // the last stored chunk
		}
	}
	ch := m.Chunks[bad]
	p := filepath.Join(dir, "chunks", ch.ID[:2], ch.ID)
	obj, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	obj[len(obj)/2] ^= 0x10
	if err := os.WriteFile(p, obj, 0o644); err != nil {
		t.Fatal(err)
	}
	cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(plain.Store(), catalog.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Prefetch(t.Context(), m, nil)
	var ce *catalog.ChunkError
	if !errors.As(err, &ce) || ce.Index != bad || ce.Offset != ch.Offset || !errors.Is(err, catalog.ErrCorruptChunk) {
		t.Fatalf("Prefetch of an image with chunk %d damaged = %v, want a corrupt ChunkError naming it", bad, err)
	}
	if st := cache.Stats(); st.Chunks >= int(stored(m)) {
		t.Errorf("cache holds %d chunks after the failure, want fewer than %d (not the damaged one)", st.Chunks, stored(m))
	}
}

// TestPrefetchDeclinesAnImageTheCacheCannotHold: an image whose chunks
// would not fit is left to stream, and nothing is fetched for it.
func TestPrefetchDeclinesAnImageTheCacheCannotHold(t *testing.T) {
	plain, _ := fileCatalog(t)
	data := make([]byte, catalog.MaxChunkSize+4*testChunk) // random: stored bytes exceed the smallest cache
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	m := push(t, plain, "big:1", data, catalog.PushOptions{}).Manifest
	cache, err := catalog.OpenCache(t.TempDir(), catalog.MaxChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: plain.Store()}
	c, err := catalog.New(cs, catalog.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if whole, err := c.Prefetch(t.Context(), m, nil); whole || err != nil || cs.opens.Load() != 0 {
		t.Errorf("Prefetch of %d stored bytes into a %d-byte cache = %v, %v after %d reads; want false, nil, 0",
			m.StoredBytes(), catalog.MaxChunkSize, whole, err, cs.opens.Load())
	}
}
