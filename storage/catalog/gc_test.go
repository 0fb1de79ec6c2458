package catalog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// randomChunks returns n chunks of bytes no two alike, none zero.
func randomChunks(n int, seed uint64) []byte {
	data := make([]byte, n*testChunk)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(data)
	return data
}

func chunkKeyOf(data []byte) string {
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])
	return "chunks/" + id[:2] + "/" + id
}

// atCall returns a Progress callback that runs fn on its nth call.
func atCall(n int32, fn func()) func(int64) {
	var calls atomic.Int32
	return func(int64) {
		if calls.Add(1) == n {
			fn()
		}
	}
}

// backdate sets the modification time of every file under dir to age ago.
func backdate(t *testing.T, dir string, age time.Duration) {
	t.Helper()
	when := time.Now().Add(-age)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// putMarker writes a marker as a push or gc that started at start would.
func putMarker(t *testing.T, c *catalog.Catalog, key string, start time.Time) {
	t.Helper()
	content := start.UTC().Format(time.RFC3339Nano)
	if err := c.Store().Put(t.Context(), key, strings.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, c *catalog.Catalog, key string) bool {
	t.Helper()
	_, err := c.Store().Stat(t.Context(), key)
	return err == nil
}

// A gc whose grace is far shorter than a push deletes none of the push's
// chunks while it runs: the push's marker protects them.
func TestGCDuringLongPushKeepsItsChunks(t *testing.T) {
	data := randomChunks(16, 1)
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			var mid *catalog.GCResult
			progress := atCall(8, func() {
				time.Sleep(20 * time.Millisecond) // the chunks stored so far are older than the grace
				var err error
				if mid, err = c.GC(t.Context(), time.Millisecond, false); err != nil {
					t.Errorf("GC during the push = %v", err)
				}
			})
			push(t, c, "long:1", data, catalog.PushOptions{Progress: progress})
			if mid == nil || mid.Chunks != 0 || mid.Pushes != 1 {
				t.Errorf("GC during the push = %+v, want no chunk deleted and one push seen", mid)
			}
			after, err := c.GC(t.Context(), time.Millisecond, false)
			if err != nil || after.Chunks != 0 || after.LiveChunks != 16 || after.Pushes != 0 {
				t.Errorf("GC after the push = %+v, %v; want 16 live chunks and no push", after, err)
			}
			if got, err := pull(t, c, "long:1"); err != nil || !bytes.Equal(got, data) {
				t.Errorf("pull long:1 after gc = %d bytes, %v; want the %d pushed", len(got), err, len(data))
			}
		})
	}
}

// An orphan chunk far older than the grace, reused by a push, survives a
// gc run during that push; the orphans it does not reuse go.
func TestGCKeepsOldOrphanReusedByPush(t *testing.T) {
	c, dir := fileCatalog(t)
	ctx := t.Context()
	old := randomChunks(8, 2)
	push(t, c, "old:1", old, catalog.PushOptions{})
	if _, err := c.Remove(ctx, catalog.Ref{Name: "old", Tag: "1"}); err != nil {
		t.Fatal(err)
	}
	backdate(t, filepath.Join(dir, "chunks"), 2*time.Hour)
	backdate(t, filepath.Join(dir, "manifests"), 2*time.Hour)
	next := append(bytes.Clone(old[:4*testChunk]), randomChunks(4, 3)...)
	var mid *catalog.GCResult
	progress := atCall(8, func() { // every chunk stored or touched
		var err error
		if mid, err = c.GC(ctx, time.Millisecond, false); err != nil {
			t.Errorf("GC during the push = %v", err)
		}
	})
	push(t, c, "next:1", next, catalog.PushOptions{Progress: progress})
	if mid == nil || mid.Chunks != 4 || mid.Manifests != 1 {
		t.Errorf("GC during the push = %+v, want old:1's manifest and its 4 chunks not reused deleted", mid)
	}
	for i := range 8 {
		key := chunkKeyOf(old[i*testChunk : (i+1)*testChunk])
		if got, want := exists(t, c, key), i < 4; got != want {
			t.Errorf("old chunk %d exists = %v, want %v", i, got, want)
		}
	}
	if got, err := pull(t, c, "next:1"); err != nil || !bytes.Equal(got, next) {
		t.Errorf("pull next:1 after gc = %v", err)
	}
}

// The marker of a crashed push or gc stops protecting anything once it is
// stale, and gc deletes it; a live one protects what is newer than its start.
func TestGCRemovesStaleMarkers(t *testing.T) {
	c, dir := fileCatalog(t)
	orphan := randomChunks(1, 4)
	orphanKey := chunkKeyOf(orphan)
	if err := c.Store().Put(t.Context(), orphanKey, bytes.NewReader(orphan), int64(len(orphan))); err != nil {
		t.Fatal(err)
	}
	backdate(t, filepath.Join(dir, "chunks"), time.Hour)
	putMarker(t, c, "uploads/running", time.Now().Add(-2*time.Hour)) // started before the orphan
	putMarker(t, c, "uploads/crashed", time.Now().Add(-3*time.Hour))
	putMarker(t, c, "gc/crashed", time.Now().Add(-3*time.Hour))
	for _, key := range []string{"uploads/crashed", "gc/crashed"} {
		old := time.Now().Add(-time.Hour)
		os.Chtimes(filepath.Join(dir, key), old, old)
	}

	res, err := c.GC(t.Context(), time.Millisecond, false)
	if err != nil || res.StaleMarkers != 2 || res.Pushes != 1 || res.Chunks != 0 || res.KeptYoung != 1 {
		t.Errorf("GC with a running push = %+v, %v; want 2 stale markers deleted, the orphan kept", res, err)
	}
	for key, want := range map[string]bool{"uploads/crashed": false, "gc/crashed": false, "uploads/running": true, orphanKey: true} {
		if got := exists(t, c, key); got != want {
			t.Errorf("after gc %s exists = %v, want %v", key, got, want)
		}
	}

	backdate(t, filepath.Join(dir, "uploads"), time.Hour) // the push crashed too
	res, err = c.GC(t.Context(), time.Millisecond, false)
	if err != nil || res.StaleMarkers != 1 || res.Pushes != 0 || res.Chunks != 1 {
		t.Errorf("GC after the push crashed = %+v, %v; want its marker and the orphan deleted", res, err)
	}
	if exists(t, c, "uploads/running") || exists(t, c, orphanKey) {
		t.Errorf("after gc the stale marker or the orphan is still there")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "gc")); len(entries) != 0 {
		t.Errorf("gc left %d markers of its own", len(entries))
	}
}

// A gc running when a push is about to write its manifest may have missed
// its marker or a chunk's touch, so the push waits for it to end; a stale
// one it ignores.
func TestPushWaitsForRunningGC(t *testing.T) {
	c, dir := fileCatalog(t)
	putMarker(t, c, "gc/running", time.Now())
	putMarker(t, c, "gc/crashed", time.Now().Add(-time.Hour))
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "gc", "crashed"), old, old)
	data := randomChunks(2, 5)
	done := make(chan error, 1)
	go func() {
		_, err := c.Push(t.Context(), bytes.NewReader(data), int64(len(data)), catalog.PushOptions{Name: "w", Version: "1", ChunkSize: testChunk})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Push while a gc runs = %v before the gc ended, want it to wait", err)
	case <-time.After(time.Second):
	}
	if _, err := c.Resolve(t.Context(), catalog.Ref{Name: "w", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Resolve while the push waits = %v, want ErrNotFound", err)
	}
	if err := c.Store().Delete(t.Context(), "gc/running"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Push after the gc ended = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Push still waits 10s after the gc ended")
	}
	if got, err := pull(t, c, "w:1"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("pull w:1 = %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "uploads")); len(entries) != 0 {
		t.Errorf("push left %d upload markers", len(entries))
	}
}

// A chunk deleted under a push before it commits fails the push, and no
// ref moves to a manifest with a missing chunk.
func TestPushWithDeletedChunkMovesNoRef(t *testing.T) {
	data := randomChunks(4, 6)
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			progress := atCall(4, func() {
				if err := c.Store().Delete(t.Context(), chunkKeyOf(data[:testChunk])); err != nil {
					t.Error(err)
				}
			})
			_, err := c.Push(t.Context(), bytes.NewReader(data), int64(len(data)),
				catalog.PushOptions{Name: "gone", Version: "1", ChunkSize: testChunk, Progress: progress})
			if !errors.Is(err, catalog.ErrChunkGone) || !strings.Contains(err.Error(), "chunk 0 at offset 0") {
				t.Errorf("Push with a chunk deleted = %v, want ErrChunkGone naming chunk 0", err)
			}
			if _, err := c.Resolve(t.Context(), catalog.Ref{Name: "gone", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("Resolve after the failed push = %v, want ErrNotFound", err)
			}
		})
	}
}

// A file removed or truncated while it is pushed fails the push with an
// error saying so, and no ref moves.
func TestFileVanishingDuringPushMovesNoRef(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		change     func(path string) error
	}{
		{"removed", "vanished", os.Remove},
		{"truncated", "changed", func(path string) error { return os.Truncate(path, testChunk) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := fileCatalog(t)
			path := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(path, randomChunks(16, 7), 0o644); err != nil {
				t.Fatal(err)
			}
			progress := atCall(2, func() {
				if err := tc.change(path); err != nil {
					t.Error(err)
				}
			})
			_, err := c.PushFile(t.Context(), path, catalog.PushOptions{Name: "v", Version: "1", ChunkSize: testChunk, Progress: progress})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("PushFile of a file %s meanwhile = %v, want an error naming it and saying %q", tc.name, err, tc.want)
			}
			if _, err := c.Resolve(t.Context(), catalog.Ref{Name: "v", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("Resolve after the failed push = %v, want ErrNotFound", err)
			}
		})
	}
}
