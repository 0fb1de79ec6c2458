package imager_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/internal/sample"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

const chunkSize = 256 << 10

// bench is a catalog with one pushed image and a node cache.
type bench struct {
	cat    *catalog.Catalog
	cache  *catalog.Cache
	m      *catalog.Manifest
	digest string
	image  []byte
}

// newBench pushes a disk-shaped image of size bytes whose chunks at the
// indexes zeroed are all zeros (the sample's shape makes none).
func newBench(t *testing.T, size int64, zeroed ...int) *bench {
	t.Helper()
	store, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := catalog.New(store, catalog.Options{})
	var img bytes.Buffer
	sample.WriteDiskImage(&img, size, 11)
	data := img.Bytes()
	for i := 0; i < len(data); i += 5 * chunkSize {
		copy(data[i:], "stored chunk") // some stored chunks whatever the seed made
	}
	for _, i := range zeroed {
		clear(data[i*chunkSize : (i+1)*chunkSize])
	}
	res, err := plain.Push(t.Context(), bytes.NewReader(data), size, catalog.PushOptions{Name: "img", Version: "1", Kind: catalog.KindDisk, ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := catalog.New(store, catalog.Options{Cache: cache})
	return &bench{cat: cat, cache: cache, m: res.Manifest, digest: res.Digest, image: data}
}

// virtualDrive is a file drive of size bytes filled with garbage, so that
// nothing verifies by accident.
func virtualDrive(t *testing.T, size int64) (string, imager.Device) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "drive.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xEE}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev := imager.NewFileDevice(f, false)
	t.Cleanup(func() { dev.Close() })
	return p, dev
}

func (b *bench) write(t *testing.T, ctx context.Context, targets []imager.Target, opts imager.WriteOptions) []imager.Result {
	t.Helper()
	w := imager.NewWriter(imager.WriterConfig{Catalog: b.cat, Log: slog.New(slog.DiscardHandler)})
	return w.Write(ctx, b.m, b.digest, targets, opts)
}

func targets(t *testing.T, n int, size int64, wrap func(i int, d imager.Device) imager.Device) ([]imager.Target, []string) {
	var ts []imager.Target
	var paths []string
	for i := range n {
		p, dev := virtualDrive(t, size)
		if wrap != nil {
			dev = wrap(i, dev)
		}
		ts = append(ts, imager.Target{ID: filepath.Base(filepath.Dir(p)), Path: p, Dev: dev})
		paths = append(paths, p)
	}
	return ts, paths
}

// TestWriteManyDrivesAllVerified writes four fresh garbage-filled drives
// for each way zero chunks can go: written, zeroed with --discard (no write
// reaches a zero chunk), and written after all on drives that cannot zero.
// A Zero that does nothing leaves garbage where the image has zeros: that
// fails read-back at the first zero chunk.
func TestWriteManyDrivesAllVerified(t *testing.T) {
	b := newBench(t, 40*chunkSize+4096, 2, 3, 4, 11, 17, 18)
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	firstZero := int64(-1)
	for _, ch := range b.m.Chunks {
		if ch.Zero {
			firstZero = ch.Offset
			break
		}
	}
	if firstZero < 0 {
		t.Fatal("the sample image has no zero chunk: nothing here tests --discard")
	}
	for _, tc := range []struct {
		name       string
		discard    bool
		wrap       func(imager.Device) imager.Device
		zeros      string // the results' Zeros
		zeroWrites int    // writes each zero chunk gets
	}{
		{"zeros written", false, nil, "written", 1},
		{"discard", true, nil, "zeroed", 0},
		{"discard, device cannot zero", true, func(d imager.Device) imager.Device { return noZeroDevice{d} },
			"written (the device cannot zero ranges)", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counts := make([]*countingDevice, 4)
			ts, paths := targets(t, 4, 48*chunkSize, func(i int, d imager.Device) imager.Device {
				if tc.wrap != nil {
					d = tc.wrap(d)
				}
				counts[i] = &countingDevice{Device: d}
				return counts[i]
			})
			for i, r := range b.write(t, t.Context(), ts, imager.WriteOptions{Discard: tc.discard}) {
				if r.OwnStream {
					t.Errorf("drive %d read on its own; all drives keep pace here", i)
				}
				if r.Phase != imager.PhaseVerified || r.VerifiedDigest != b.digest || r.BytesWritten != b.m.Size || r.Zeros != tc.zeros {
					t.Errorf("drive %d: %+v, want verified %s, zeros %q", i, r, b.digest, tc.zeros)
				}
				if got := testenv.SHA256(t, paths[i], b.m.Size); got != want {
					t.Errorf("drive %d: sha256 of the written bytes differs from the image's", i)
				}
				for _, ch := range b.m.Chunks {
					if got, want := counts[i].writes(ch.Offset), tc.zeroWrites; ch.Zero && got != want || !ch.Zero && got != 1 {
						t.Errorf("drive %d: chunk at %d (zero %v) written %d times, want %d", i, ch.Offset, ch.Zero, got, map[bool]int{true: want, false: 1}[ch.Zero])
					}
				}
			}
		})
	}
	t.Run("discard, zero does nothing", func(t *testing.T) {
		ts, _ := targets(t, 1, 48*chunkSize, func(_ int, d imager.Device) imager.Device { return idleZeroDevice{d} })
		r := b.write(t, t.Context(), ts, imager.WriteOptions{Discard: true})[0]
		var mm *imager.MismatchError
		if !errors.As(r.Err, &mm) || mm.Offset != firstZero || r.VerifiedDigest != "" {
			t.Errorf("drive whose Zero does nothing: %s %v, want a mismatch at the first zero chunk, %d", r.Phase, r.Err, firstZero)
		}
	})
	// Each stored chunk was downloaded and checked once, before the first
	// write; with every drive keeping pace, each write then decompressed
	// each stored chunk once, for all its drives.
	stored := int64(len(b.m.Chunks)) - zeroChunks(b.m)
	if st := b.cache.Stats(); st.Misses != stored || st.Hits != 4*stored {
		t.Errorf("four writes: %d chunks downloaded and %d served from the cache, want %d and %d",
			st.Misses, st.Hits, stored, 4*stored)
	}
}

// countingDevice counts the writes at each offset.
type countingDevice struct {
	imager.Device
	mu   sync.Mutex
	offs map[int64]int
}

func (d *countingDevice) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	if d.offs == nil {
		d.offs = map[int64]int{}
	}
	d.offs[off]++
	d.mu.Unlock()
	return d.Device.WriteAt(p, off)
}

func (d *countingDevice) writes(off int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.offs[off]
}

// noZeroDevice cannot zero ranges, like a USB key without WRITE ZEROES.
type noZeroDevice struct{ imager.Device }

func (noZeroDevice) Zero(off, n int64) error {
	return fmt.Errorf("zero %d bytes at %d: %w", n, off, imager.ErrZeroUnsupported)
}

// idleZeroDevice says it zeroed a range and did nothing, like a device
// whose discard is not deterministic.
type idleZeroDevice struct{ imager.Device }

func (idleZeroDevice) Zero(off, n int64) error { return nil }

func zeroChunks(m *catalog.Manifest) int64 {
	var n int64
	for _, ch := range m.Chunks {
		if ch.Zero {
			n++
		}
	}
	return n
}

// faultyDevice fails writes at or after failAt, like a pulled USB key.
type faultyDevice struct {
	imager.Device
	failAt int64
}

func (d faultyDevice) WriteAt(p []byte, off int64) (int, error) {
	if off >= d.failAt {
		return 0, errors.New("input/output error")
	}
	return d.Device.WriteAt(p, off)
}

func TestFailedDriveFailsAlone(t *testing.T) {
	b := newBench(t, 32*chunkSize)
	ts, _ := targets(t, 3, 32*chunkSize, func(i int, d imager.Device) imager.Device {
		if i == 1 {
			return faultyDevice{d, 10 * chunkSize}
		}
		return d
	})
	results := b.write(t, t.Context(), ts, imager.WriteOptions{})
	for i, r := range results {
		switch {
		case i == 1 && (r.Phase != imager.PhaseFailed || r.Error != "write at offset 2621440: input/output error"):
			t.Errorf("faulty drive: %s %q, want failed with the offset and the I/O error", r.Phase, r.Error)
		case i != 1 && r.Phase != imager.PhaseVerified:
			t.Errorf("drive %d next to a faulty one: %s %q, want verified", i, r.Phase, r.Error)
		}
	}
}

// flippingDevice flips one byte on the medium after the write is flushed,
// before read-back, as a bad flash cell would.
type flippingDevice struct {
	imager.Device
	path string
	at   int64
}

func (d flippingDevice) Sync() error {
	if err := d.Device.Sync(); err != nil {
		return err
	}
	f, _ := os.OpenFile(d.path, os.O_RDWR, 0)
	defer f.Close()
	var c [1]byte
	f.ReadAt(c[:], d.at)
	c[0] ^= 0x10
	_, err := f.WriteAt(c[:], d.at)
	return err
}

func TestFlippedByteIsCaughtWithItsOffset(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	const at = 5*chunkSize + 1234
	var ts []imager.Target
	for _, flip := range []bool{false, true} {
		p, dev := virtualDrive(t, 16*chunkSize)
		if flip {
			dev = flippingDevice{dev, p, at}
		}
		ts = append(ts, imager.Target{ID: p, Path: p, Dev: dev})
	}
	results := b.write(t, t.Context(), ts, imager.WriteOptions{})
	var mm *imager.MismatchError
	if !errors.As(results[1].Err, &mm) || mm.Offset != at || results[1].VerifiedDigest != "" {
		t.Errorf("flipped drive: %v, want a mismatch at offset %d and no verified digest", results[1].Err, at)
	}
	if results[0].Phase != imager.PhaseVerified {
		t.Errorf("healthy drive: %s %v", results[0].Phase, results[0].Err)
	}
}

// stalledDevice holds every write until open is closed, like a drive that
// has stalled, or until ctx ends.
type stalledDevice struct {
	imager.Device
	ctx  context.Context
	open <-chan struct{}
}

func (d stalledDevice) WriteAt(p []byte, off int64) (int, error) {
	select {
	case <-d.open:
	case <-d.ctx.Done():
		return 0, d.ctx.Err()
	}
	return d.Device.WriteAt(p, off)
}

// TestSlowDriveFallsBehindWithoutHoldingOthers writes two drives, one of
// which stalls at its first write until the other one has been written
// and verified: had the stalled drive held it back, nothing would move
// until waitLong ended the write, canceled. The stalled drive must leave
// the shared stream and, let go, end verified; the other must not leave
// it (it leads: it cannot fall behind, whatever the machine's load).
func TestSlowDriveFallsBehindWithoutHoldingOthers(t *testing.T) {
	b := newBench(t, 32*chunkSize)
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	fastDone := make(chan struct{})
	ts, paths := targets(t, 2, 32*chunkSize, func(i int, d imager.Device) imager.Device {
		if i == 1 {
			return stalledDevice{Device: d, ctx: ctx, open: fastDone}
		}
		return d
	})
	done := func(i int, r imager.Result) {
		if i == 0 {
			close(fastDone)
		}
	}
	results := b.write(t, ctx, ts, imager.WriteOptions{Done: done})
	if ctx.Err() != nil {
		t.Fatalf("the fast drive did not end while the other was stalled (its result waits for it): %+v", results)
	}
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	for i, r := range results {
		if r.Phase != imager.PhaseVerified {
			t.Errorf("drive %d: %s %v, want verified", i, r.Phase, r.Err)
		}
		if got := testenv.SHA256(t, paths[i], b.m.Size); got != want {
			t.Errorf("drive %d: sha256 of the written bytes differs from the image's", i)
		}
		if slow := i == 1; r.OwnStream != slow {
			t.Errorf("drive %d: own stream %v, want %v (only the stalled drive leaves the shared stream)", i, r.OwnStream, slow)
		}
	}
}

// cancelingDevice cancels the write once the drives have made writes
// writes between them, and counts its drive's writes that begin after
// the cancel.
type cancelingDevice struct {
	imager.Device
	ctx    context.Context
	cancel func()
	writes *atomic.Int64 // of every drive
	at     int64
	late   *atomic.Int64 // of this drive
}

func (d cancelingDevice) WriteAt(p []byte, off int64) (int, error) {
	if d.ctx.Err() != nil {
		d.late.Add(1)
	}
	n, err := d.Device.WriteAt(p, off)
	if d.writes.Add(1) == d.at {
		d.cancel()
	}
	return n, err
}

// TestCancelStartsNoMoreWrites cancels a write from inside a drive's
// sixth write: no drive may begin a write after that, but the one it had
// already decided to make (it checks the context before each write), and
// every drive ends canceled, unverified.
func TestCancelStartsNoMoreWrites(t *testing.T) {
	b := newBench(t, 64*chunkSize)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var writes atomic.Int64
	late := make([]atomic.Int64, 2)
	ts, _ := targets(t, 2, 64*chunkSize, func(i int, d imager.Device) imager.Device {
		return cancelingDevice{Device: d, ctx: ctx, cancel: cancel, writes: &writes, at: 6, late: &late[i]}
	})
	results := b.write(t, ctx, ts, imager.WriteOptions{})
	for i, r := range results {
		if r.Phase != imager.PhaseCanceled || r.VerifiedDigest != "" {
			t.Errorf("drive %d after cancel: %s, want canceled and unverified", i, r.Phase)
		}
		if n := late[i].Load(); n > 1 {
			t.Errorf("drive %d began %d writes after the cancel, want at most the one under way", i, n)
		}
	}
	if n := writes.Load(); n >= 2*int64(len(b.m.Chunks)) {
		t.Errorf("%d writes in all: the drives were written to the end despite the cancel", n)
	}
}

// TestCorruptStoreChunkFailsEveryDriveNamingIt damages the last stored
// chunk of an image in the store. By default the image is fetched and
// checked before any drive is written, so every drive fails naming the
// chunk and keeps every byte it had; writing while fetching, the drives
// fail as well, never verified, holding the chunks before it.
func TestCorruptStoreChunkFailsEveryDriveNamingIt(t *testing.T) {
	for _, whileFetching := range []bool{false, true} {
		t.Run(fmt.Sprintf("write while fetching %v", whileFetching), func(t *testing.T) {
			b := newBench(t, 16*chunkSize)
			var victim catalog.Chunk
			for _, ch := range b.m.Chunks {
				if !ch.Zero {
					victim = ch // the last stored chunk
				}
			}
			junk := bytes.Repeat([]byte{1}, int(victim.Stored))
			b.cat.Store().Put(t.Context(), "chunks/"+victim.ID[:2]+"/"+victim.ID, bytes.NewReader(junk), int64(len(junk)))
			ts, paths := targets(t, 2, 16*chunkSize, nil)
			w := imager.NewWriter(imager.WriterConfig{Catalog: b.cat, WriteWhileFetching: whileFetching, Log: slog.New(slog.DiscardHandler)})
			for i, r := range w.Write(t.Context(), b.m, b.digest, ts, imager.WriteOptions{}) {
				var ce *catalog.ChunkError
				if r.Phase != imager.PhaseFailed || !errors.As(r.Err, &ce) || ce.Offset != victim.Offset || r.VerifiedDigest != "" {
					t.Errorf("drive %d with a corrupt chunk in the store: %s %v, want failed naming the chunk at %d", i, r.Phase, r.Err, victim.Offset)
				}
				data, err := os.ReadFile(paths[i])
				if err != nil {
					t.Fatal(err)
				}
				untouched := bytes.Count(data, []byte{0xEE}) == len(data)
				if !whileFetching && (!untouched || r.BytesWritten != 0) {
					t.Errorf("drive %d: %d bytes written, want the drive untouched", i, r.BytesWritten)
				}
				if whileFetching && r.BytesWritten == 0 {
					t.Errorf("drive %d writing while fetching: nothing written before the corrupt chunk at %d", i, victim.Offset)
				}
			}
		})
	}
}

// TestCancelWhileFetching cancels a write while the image is still being
// fetched into the node cache, which stalls until the cancel: every drive
// ends canceled, untouched.
func TestCancelWhileFetching(t *testing.T) {
	b := newBench(t, 32*chunkSize)
	gate := make(chan struct{}) // never opened: the fetch stalls at this chunk
	cat := storeCatalog(t, &gatedStore{Store: b.cat.Store(), key: chunkKey(stallChunk(t, b.m, b.m.Size/2)), open: gate})
	ts, paths := targets(t, 2, 32*chunkSize, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	progress := func(_ int, phase imager.Phase, done, _ int64) {
		if phase == imager.PhaseFetching && done > 0 {
			once.Do(cancel)
		}
	}
	results := imager.NewWriter(imager.WriterConfig{Catalog: cat, Log: slog.New(slog.DiscardHandler)}).Write(ctx, b.m, b.digest, ts, imager.WriteOptions{Progress: progress})
	if ctx.Err() == nil {
		t.Fatalf("Write returned without the cancel being made (the fetch never reported progress): %+v", results)
	}
	for i, r := range results {
		data, _ := os.ReadFile(paths[i])
		if r.Phase != imager.PhaseCanceled || r.BytesWritten != 0 || bytes.Count(data, []byte{0xEE}) != len(data) {
			t.Errorf("drive %d canceled while fetching: %s, %d bytes written; want canceled, untouched", i, r.Phase, r.BytesWritten)
		}
	}
}

// TestCorruptCachedChunkIsFetchedAgain damages a chunk in the node cache
// after a first write: the second write finds the copy fails its check,
// fetches the chunk again from the store, and every drive verifies.
func TestCorruptCachedChunkIsFetchedAgain(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	ts, _ := targets(t, 2, 16*chunkSize, nil)
	for i, r := range b.write(t, t.Context(), ts, imager.WriteOptions{}) {
		if r.Phase != imager.PhaseVerified {
			t.Fatalf("first write, drive %d: %s %v", i, r.Phase, r.Err)
		}
	}
	var victim catalog.Chunk
	for _, ch := range b.m.Chunks {
		if !ch.Zero {
			victim = ch
			break
		}
	}
	p := filepath.Join(b.cache.Dir(), victim.ID[:2], victim.ID)
	copied, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the first write left no cached copy of chunk %s: %v", victim.ID, err)
	}
	copied[len(copied)/2] ^= 0xFF
	if err := os.WriteFile(p, copied, 0o644); err != nil {
		t.Fatal(err)
	}
	before := b.cache.Stats()

	ts, paths := targets(t, 2, 16*chunkSize, nil)
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	for i, r := range b.write(t, t.Context(), ts, imager.WriteOptions{}) {
		if r.Phase != imager.PhaseVerified || r.VerifiedDigest != b.digest {
			t.Errorf("second write, drive %d: %s %v, want verified", i, r.Phase, r.Err)
		}
		if got := testenv.SHA256(t, paths[i], b.m.Size); got != want {
			t.Errorf("second write, drive %d: sha256 of the written bytes differs from the image's", i)
		}
	}
	after := b.cache.Stats()
	if after.Corrupt < 1 || after.Misses <= before.Misses {
		t.Errorf("cache after a write over a corrupt copy: %d corrupt, %d downloads (%d before); want the copy found corrupt and the chunk downloaded again",
			after.Corrupt, after.Misses, before.Misses)
	}
	if fixed, err := os.ReadFile(p); err != nil || bytes.Equal(fixed, copied) {
		t.Errorf("the corrupt copy of chunk %s is still in the cache (%v)", victim.ID, err)
	}
}
