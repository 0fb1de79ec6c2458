package catalog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/klauspost/compress/zstd"

	"github.com/imagefarm/imagefarm/internal/sample"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// faultRig is an image pushed straight to a real MinIO, read back through
// a fault proxy.
type faultRig struct {
	minio  *testenv.MinIO
	url    string           // the bucket, straight
	direct *catalog.Catalog // for pushing and tampering
	m      *catalog.Manifest
	data   []byte
}

func newFaultRig(t *testing.T, size int64) *faultRig {
	t.Helper()
	srv := minioServer.Get(t)
	url := srv.NewBucket(t)
	s, err := storage.Open(url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := catalog.New(s, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if err := sample.WriteImage(&img, size, 4, sample.Shape{Random: 70, Zeros: 10}); err != nil { // stored from the first chunk on
		t.Fatal(err)
	}
	data := img.Bytes()
	res := push(t, direct, "faults:1", data, catalog.PushOptions{})
	return &faultRig{minio: srv, url: url, direct: direct, m: res.Manifest, data: data}
}

// through starts a fault proxy for the test and a catalog reading through
// it, whose chunk reads are counted.
func (r *faultRig) through(t *testing.T, opts catalog.Options) (*testenv.FaultProxy, *catalog.Catalog, *countingStore) {
	t.Helper()
	proxy := testenv.StartFaultProxy(t, r.minio.Endpoint)
	s, err := storage.Open(proxy.StoreURL(r.url), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: s}
	c, err := catalog.New(cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return proxy, c, cs
}

// stream reads m through c, calling before(i) as chunk i is handed on,
// and returns the bytes handed on.
func stream(t *testing.T, c *catalog.Catalog, m *catalog.Manifest, before func(i int)) ([]byte, error) {
	t.Helper()
	out := make([]byte, 0, m.Size)
	err := c.StreamFrom(t.Context(), m, 0, func(i int, ch catalog.Chunk, b *catalog.Buffer) error {
		if before != nil {
			before(i)
		}
		if b == nil {
			out = append(out, make([]byte, ch.Length)...)
		} else {
			out = append(out, b.Data...)
		}
		return nil
	})
	return out, err
}

// resumeFigures logs what the faults cost, and fails the test unless
// reads resumed at the chunk that was cut: no chunk downloaded again after
// it had arrived whole, and no cut costing more than one chunk's bytes.
func resumeFigures(t *testing.T, what string, m *catalog.Manifest, cs *countingStore, proxy *testenv.FaultProxy, took time.Duration) {
	t.Helper()
	uses := map[string]int{} // chunk key -> stored chunks of m that are it
	var reads, storedBytes, largest int64
	for _, ch := range m.Chunks {
		if !ch.Zero {
			uses["chunks/"+ch.ID[:2]+"/"+ch.ID]++
			reads++
			storedBytes += ch.Stored
			largest = max(largest, ch.Stored)
		}
	}
	cs.mu.Lock()
	again := 0
	for key, n := range cs.whole {
		again += max(0, n-uses[key])
	}
	cs.mu.Unlock()
	extra := max(cs.bytes.Load()-storedBytes, 0)
	perCut := int64(0)
	if proxy.Cuts() > 0 {
		perCut = extra / proxy.Cuts()
	}
	t.Logf("%s: %d connections, %d cut; %d chunk downloads retried of %d; %s downloaded again (%.1f%% of the %s stored, %s image; %s a cut, chunks up to %s); took %v",
		what, proxy.Conns(), proxy.Cuts(), cs.opens.Load()-reads, reads, humanize.IBytes(uint64(extra)),
		100*float64(extra)/float64(storedBytes), humanize.IBytes(uint64(storedBytes)), humanize.IBytes(uint64(m.Size)),
		humanize.IBytes(uint64(perCut)), humanize.IBytes(uint64(largest)), took.Round(time.Millisecond))
	if again > 0 {
		t.Errorf("%d chunks were downloaded again after they had arrived whole", again)
	}
	if extra > proxy.Cuts()*largest {
		t.Errorf("%d bytes downloaded again for %d cuts, more than one chunk (%d bytes) a cut", extra, proxy.Cuts(), largest)
	}
}

func TestStreamThroughStorageFaults(t *testing.T) {
	rig := newFaultRig(t, 40<<20)
	// The faults run at once, each reading the rig through a proxy of its
	// own: the 20 s outage need not wait for the others.
	t.Run("every connection cut after 1 MiB", func(t *testing.T) {
		t.Parallel()
		proxy, c, cs := rig.through(t, catalog.Options{})
		proxy.CutAfter(1 << 20)
		start := time.Now()
		got, err := stream(t, c, rig.m, nil)
		if err != nil || !bytes.Equal(got, rig.data) {
			t.Fatalf("Stream with connections cut = %v (%d of %d bytes, equal %v)", err, len(got), len(rig.data), bytes.Equal(got, rig.data))
		}
		resumeFigures(t, "cut after 1 MiB", rig.m, cs, proxy, time.Since(start))
		if proxy.Cuts() == 0 || cs.opens.Load() <= int64(len(cs.whole)) {
			t.Errorf("no connection was cut (%d cuts, %d reads): the test tested nothing", proxy.Cuts(), cs.opens.Load())
		}
	})

	t.Run("50ms latency", func(t *testing.T) {
		t.Parallel()
		proxy, c, cs := rig.through(t, catalog.Options{})
		proxy.SetLatency(50 * time.Millisecond)
		start := time.Now()
		got, err := stream(t, c, rig.m, nil)
		if err != nil || !bytes.Equal(got, rig.data) {
			t.Fatalf("Stream with 50ms latency = %v (equal %v)", err, bytes.Equal(got, rig.data))
		}
		resumeFigures(t, "50ms latency", rig.m, cs, proxy, time.Since(start))
	})

	// The outages start as the 40th and 12th chunk objects are opened: mid-image
	// however far the stream reads ahead.
	t.Run("refused for 20s mid-stream", func(t *testing.T) {
		t.Parallel()
		proxy, c, cs := rig.through(t, catalog.Options{})
		const outage = 20 * time.Second
		var refused, restored atomic.Int64 // unix nanos
		cs.onOpen = func(n int64) {
			if n == 40 {
				proxy.Refuse(true)
				refused.Store(time.Now().UnixNano())
				back := time.AfterFunc(outage, func() {
					proxy.Refuse(false)
					restored.Store(time.Now().UnixNano())
				})
				t.Cleanup(func() { back.Stop() })
			}
		}
		start := time.Now()
		got, err := stream(t, c, rig.m, nil)
		end := time.Now()
		if err != nil || !bytes.Equal(got, rig.data) {
			t.Fatalf("Stream across a 20s outage = %v (equal %v)", err, bytes.Equal(got, rig.data))
		}
		if refused.Load() == 0 || restored.Load() == 0 {
			t.Fatalf("the stream ended before the outage ended (began %v)", refused.Load() != 0)
		}
		resumeFigures(t, "refused for 20s", rig.m, cs, proxy, end.Sub(start))
		t.Logf("refused for 20s: completed %v after the outage began, %v after storage came back",
			end.Sub(time.Unix(0, refused.Load())).Round(time.Millisecond), end.Sub(time.Unix(0, restored.Load())).Round(time.Millisecond))
	})

	t.Run("refused beyond the retry budget", func(t *testing.T) {
		t.Parallel()
		const budget = 3 * time.Second
		proxy, c, cs := rig.through(t, catalog.Options{RetryBudget: budget})
		var refused atomic.Int64 // unix nanos
		cs.onOpen = func(n int64) {
			if n == 12 {
				proxy.Refuse(true)
				refused.Store(time.Now().UnixNano())
			}
		}
		handed := 0
		_, err := stream(t, c, rig.m, func(int) { handed++ })
		took := time.Since(time.Unix(0, refused.Load()))
		var ce *catalog.ChunkError
		if !errors.As(err, &ce) || !errors.Is(err, catalog.ErrStorageUnavailable) || !errors.Is(err, storage.ErrUnreachable) {
			t.Fatalf("Stream with storage gone = %v, want a ChunkError wrapping ErrStorageUnavailable", err)
		}
		t.Logf("refused for good, budget %v: failed %v after storage went away: %v", budget, took.Round(time.Millisecond), err)
		if ce.Offset != rig.m.Chunks[ce.Index].Offset || handed != ce.Index ||
			!strings.Contains(err.Error(), fmt.Sprintf("chunk %d at offset %d", ce.Index, ce.Offset)) || !strings.Contains(err.Error(), proxy.Addr()) {
			t.Errorf("error names chunk %d at %d after %d chunks handed on; want the first chunk not handed on, its offset and the endpoint %s",
				ce.Index, ce.Offset, handed, proxy.Addr())
		}
		// The budget runs from the start of the first failing attempt, which
		// includes minio-go's own retries and may have begun a moment before
		// the storage went away. How long after the budget the last attempt
		// ends is the machine's speed, not asserted: only that the budget
		// given is the one kept, not the default one.
		if took < budget-time.Second || took > catalog.DefaultRetryBudget/2 {
			t.Errorf("failed %v after storage went away, want after the %v budget given, well before the default %v",
				took, budget, catalog.DefaultRetryBudget)
		}
	})
}

func TestCorruptChunkObjectsInMinIO(t *testing.T) {
	rig := newFaultRig(t, 12*testChunk)
	victim := -1
	for i, ch := range rig.m.Chunks {
		if !ch.Zero && i > 0 && victim < 0 {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("the image has no stored chunk after the first")
	}
	v := rig.m.Chunks[victim]
	key := "chunks/" + v.ID[:2] + "/" + v.ID
	good := storedObject(t, rig.direct, v.ID)
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0x40
	put := func(t *testing.T, b []byte) {
		if err := rig.direct.Store().Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		object []byte
	}{
		{"corrupted", corrupt},
		{"truncated", good[:len(good)-100]},
	} {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, cache %v", tc.name, cached), func(t *testing.T) {
				put(t, tc.object)
				var opts catalog.Options
				if cached {
					cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
					if err != nil {
						t.Fatal(err)
					}
					opts.Cache = cache
				}
				_, c, _ := rig.through(t, opts)
				got, err := stream(t, c, rig.m, nil)
				var ce *catalog.ChunkError
				if !errors.As(err, &ce) || ce.Index != victim || ce.ID != v.ID || !errors.Is(err, catalog.ErrCorruptChunk) {
					t.Fatalf("Stream = %v, want ErrCorruptChunk for chunk %d", err, victim)
				}
				if !bytes.Equal(got, rig.data[:v.Offset]) {
					t.Errorf("Stream handed on %d bytes, want exactly the %d before the bad chunk", len(got), v.Offset)
				}
				if cached {
					if _, err := os.Stat(filepath.Join(opts.Cache.Dir(), v.ID[:2], v.ID)); err == nil {
						t.Errorf("the bad chunk was put in the node cache")
					}
				}
			})
		}
	}

	t.Run("corrupted in the node cache", func(t *testing.T) {
		put(t, good)
		cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		_, c, cs := rig.through(t, catalog.Options{Cache: cache})
		if got, err := stream(t, c, rig.m, nil); err != nil || !bytes.Equal(got, rig.data) {
			t.Fatalf("first Stream = %v", err)
		}
		if err := os.WriteFile(filepath.Join(cache.Dir(), v.ID[:2], v.ID), corrupt, 0o644); err != nil {
			t.Fatal(err)
		}
		before := cs.opens.Load()
		if got, err := stream(t, c, rig.m, nil); err != nil || !bytes.Equal(got, rig.data) {
			t.Fatalf("Stream with a corrupted cached chunk = %v, want it fetched again", err)
		}
		if st := cache.Stats(); st.Corrupt < 1 || cs.opens.Load()-before != 1 {
			t.Errorf("cache saw %d corrupt copies and fetched %d chunks again; want the bad one dropped and fetched once", st.Corrupt, cs.opens.Load()-before)
		}
	})
}

// zstdBomb is a zstd frame of RLE blocks that decompresses to n zero bytes
// (n a multiple of 128 KiB), what zstd makes of n zeros. With claim, its
// header gives n as the content size; without, it gives none and the
// decoder learns the size only by decoding.
func zstdBomb(n int64, claim bool) []byte {
	const block = 128 << 10
	b := []byte{0x28, 0xb5, 0x2f, 0xfd} // magic
	if claim {
		b = append(b, 0xc0, 0x38) // 8-byte content size follows; 128 KiB window
		b = binary.LittleEndian.AppendUint64(b, uint64(n))
	} else {
		b = append(b, 0x00, 0x38) // no content size; 128 KiB window
	}
	for left := int64(n); left > 0; left -= block {
		h := uint32(block<<3 | 1<<1) // an RLE block of 128 KiB
		if left == block {
			h |= 1 // the last
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return b
}

func TestDecompressionBombIsRefused(t *testing.T) {
	const (
		length = 4 << 20
		bomb   = 1 << 30
	)
	// The frame really is a bomb: it goes on well past any chunk's size.
	zr, err := zstd.NewReader(bytes.NewReader(zstdBomb(bomb, false)), zstd.WithDecoderMaxMemory(2*bomb))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.CopyN(io.Discard, zr, catalog.MaxChunkSize+1); n <= catalog.MaxChunkSize {
		t.Fatalf("the bomb decompressed to %d bytes (%v), want more than %d", n, err, catalog.MaxChunkSize)
	}
	zr.Close()

	c, _ := fileCatalog(t)
	zeros := make([]byte, length)
	for _, claim := range []bool{true, false} {
		t.Run(fmt.Sprintf("claims its size %v", claim), func(t *testing.T) {
			frame := zstdBomb(bomb, claim)
			id := fmt.Sprintf("%x", bytes.Repeat([]byte{0xb0}, 32))
			if err := c.Store().Put(t.Context(), "chunks/"+id[:2]+"/"+id, bytes.NewReader(frame), int64(len(frame))); err != nil {
				t.Fatal(err)
			}
			m := &catalog.Manifest{Size: length, ChunkSize: length, Chunks: []catalog.Chunk{
				{Length: length, ID: id, Check: catalog.CheckSum(zeros), Stored: int64(len(frame))},
			}}
			buf := catalog.AlignedBytes(length)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := c.ReadChunk(t.Context(), m, 0, buf)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s frame that inflates to %s, manifest says %s: allocated %s, heap in use %+d KiB: %v",
				humanize.IBytes(uint64(len(frame))), humanize.IBytes(bomb), humanize.IBytes(length),
				humanize.IBytes(alloc), (int64(after.HeapInuse)-int64(before.HeapInuse))>>10, err)
			if !errors.Is(err, catalog.ErrCorruptChunk) {
				t.Errorf("ReadChunk(bomb) = %v, want ErrCorruptChunk", err)
			}
			if alloc > 64<<20 {
				t.Errorf("reading the bomb allocated %s, want less than 64 MiB", humanize.IBytes(alloc))
			}
		})
	}
}
