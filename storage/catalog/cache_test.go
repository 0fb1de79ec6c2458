package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imagefarm/imagefarm/internal/dirlock"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// countingStore counts the chunk objects read from a real store: the
// attempts, the bytes that came, and the reads that got to an object's end.
type countingStore struct {
	storage.Store
	opens  atomic.Int64
	bytes  atomic.Int64
	onOpen func(opens int64) // if set, called before each chunk object is opened
	mu     sync.Mutex
	whole  map[string]int // chunk key -> reads to the end
}

func (s *countingStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if filepath.Dir(filepath.Dir(key)) != "chunks" {
		return s.Store.Open(ctx, key, off, n)
	}
	if opens := s.opens.Add(1); s.onOpen != nil {
		s.onOpen(opens)
	}
	rc, err := s.Store.Open(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	return countedBody{rc, s, key}, nil
}

type countedBody struct {
	io.ReadCloser
	s   *countingStore
	key string
}

func (b countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.s.bytes.Add(int64(n))
	if err == io.EOF {
		b.s.mu.Lock()
		if b.s.whole == nil {
			b.s.whole = map[string]int{}
		}
		b.s.whole[b.key]++
		b.s.mu.Unlock()
	}
	return n, err
}

func cachedCatalog(t *testing.T, maxBytes int64) (*catalog.Catalog, *catalog.Cache, *countingStore, *catalog.Manifest, []byte) {
	t.Helper()
	plain, _ := fileCatalog(t)
	data := diskImage(t, 24*testChunk, 9)
	for i := 0; i < len(data); i += 3 * testChunk {
		data[i] = 1 // some stored chunks whatever the seed made
	}
	res := push(t, plain, "cached:1", data, catalog.PushOptions{})
	cache, err := catalog.OpenCache(t.TempDir(), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: plain.Store()}
	c, err := catalog.New(cs, catalog.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	return c, cache, cs, res.Manifest, data
}

// stored counts the distinct stored chunks of m.
func stored(m *catalog.Manifest) int64 {
	ids := map[string]bool{}
	for _, ch := range m.Chunks {
		if !ch.Zero {
			ids[ch.ID] = true
		}
	}
	return int64(len(ids))
}

func TestCacheFetchesEachChunkOnceForConcurrentStreams(t *testing.T) {
	c, cache, cs, m, data := cachedCatalog(t, 1<<30)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var out bytes.Buffer
			if err := c.Pull(t.Context(), m, &out, nil); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Errorf("Pull through the cache = %v (equal %v)", err, bytes.Equal(out.Bytes(), data))
			}
		})
	}
	wg.Wait()
	if got, want := cs.opens.Load(), stored(m); got != want {
		t.Errorf("store reads for 4 concurrent pulls = %d, want %d (one per distinct stored chunk)", got, want)
	}
	if st := cache.Stats(); st.Chunks != int(stored(m)) {
		t.Errorf("cache holds %d chunks, want %d", st.Chunks, stored(m))
	}
}

func TestCacheServesWithoutTheStore(t *testing.T) {
	c, cache, cs, m, data := cachedCatalog(t, 1<<30)
	if err := c.Pull(t.Context(), m, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	before := cs.opens.Load()
	// A second cache over the same folder (a restarted imager) serves too.
	if err := cache.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := catalog.OpenCache(cache.Dir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := catalog.New(cs, catalog.Options{Cache: again})
	var out bytes.Buffer
	if err := c2.Pull(t.Context(), m, &out, nil); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Pull from a reopened cache = %v", err)
	}
	if cs.opens.Load() != before {
		t.Errorf("reopened cache read %d chunks from the store, want 0", cs.opens.Load()-before)
	}
}

func TestCorruptCacheCopyIsDetectedAndFetchedAgain(t *testing.T) {
	c, cache, cs, m, data := cachedCatalog(t, 1<<30)
	if err := c.Pull(t.Context(), m, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	var victim catalog.Chunk
	for _, ch := range m.Chunks {
		if !ch.Zero {
			victim = ch
			break
		}
	}
	p := filepath.Join(cache.Dir(), victim.ID[:2], victim.ID)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	before := cs.opens.Load()
	var out bytes.Buffer
	if err := c.Pull(t.Context(), m, &out, nil); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Pull with a corrupt cache copy = %v", err)
	}
	if st := cache.Stats(); st.Corrupt < 1 || cs.opens.Load()-before != 1 { // chunks used twice may both see the bad copy
		t.Errorf("corrupt copies seen %d, refetches %d; want at least 1 and exactly 1", st.Corrupt, cs.opens.Load()-before)
	}
}

func TestCacheStaysWithinItsBound(t *testing.T) {
	limit := int64(catalog.MaxChunkSize)
	c, cache, _, m, _ := cachedCatalog(t, limit)
	if err := c.Pull(t.Context(), m, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if st := cache.Stats(); st.Bytes > limit || st.Chunks == 0 {
		t.Errorf("cache holds %d bytes in %d chunks, want at most %d", st.Bytes, st.Chunks, limit)
	}
}

// TestCacheRemovedUnderIt wipes a cache's folder while it is open: a
// prefetch fetches every chunk again rather than trusting its index, and
// Recover takes the recreated folder back, so that no other process can
// open it.
func TestCacheRemovedUnderIt(t *testing.T) {
	c, cache, cs, m, _ := cachedCatalog(t, 1<<30)
	if _, err := c.Prefetch(t.Context(), m, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(cache.Dir()); err != nil {
		t.Fatal(err)
	}
	before := cs.opens.Load()
	if ok, err := c.Prefetch(t.Context(), m, nil); !ok || err != nil {
		t.Fatalf("Prefetch after the wipe = %v, %v", ok, err)
	}
	if got, want := cs.opens.Load()-before, stored(m); got != want {
		t.Errorf("Prefetch after the wipe read %d chunks from the store, want all %d again", got, want)
	}
	for _, ch := range m.Chunks {
		if ch.Zero {
			continue
		}
		if _, err := os.Stat(filepath.Join(cache.Dir(), ch.ID[:2], ch.ID)); err != nil {
			t.Errorf("chunk %s not in the cache folder after the prefetch: %v", ch.ID[:12], err)
		}
	}
	if ok, err := cache.Recover(); !ok || err != nil {
		t.Fatalf("Recover() after the wipe = %v, %v; want true", ok, err)
	}
	if st := cache.Stats(); st.Chunks != int(stored(m)) {
		t.Errorf("cache indexes %d chunks after Recover, want the %d on disk", st.Chunks, stored(m))
	}
	if ok, err := cache.Recover(); ok || err != nil {
		t.Errorf("Recover() again = %v, %v; want false, nothing to do", ok, err)
	}
	if _, err := catalog.OpenCache(cache.Dir(), 1<<30); !errors.Is(err, dirlock.ErrBusy) {
		t.Errorf("OpenCache(the recovered folder) = %v, want it refused as in use", err)
	}
}

// TestCacheHasOneOwner: a folder open as a cache is refused to a second
// cache, naming this process, until the first is closed.
func TestCacheHasOneOwner(t *testing.T) {
	dir := t.TempDir()
	first, err := catalog.OpenCache(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	_, err = catalog.OpenCache(dir, 1<<30)
	if want := fmt.Sprintf("node cache %s is in use by %s (pid %d); stop it first or use another --cache folder", dir, filepath.Base(os.Args[0]), os.Getpid()); fmt.Sprint(err) != want {
		t.Errorf("second OpenCache = %v, want %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := catalog.OpenCache(dir, 1<<30)
	if err != nil {
		t.Fatalf("OpenCache after Close = %v", err)
	}
	again.Close()
}
