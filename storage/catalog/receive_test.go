package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// receiverSink hands each chunk to a Receiver as a controller does for a
// capturing device: asked first, sent only when the store lacks it.
type receiverSink struct {
	r          *catalog.Receiver
	sent       atomic.Int64
	failAfter  int64 // stop sending after this many chunks (a reboot); 0 never
	corruptOne bool  // send the first chunk's bytes with one bit flipped
	corruptID  atomic.Value
}

var errRebooted = errors.New("device rebooted")

func (s *receiverSink) PutChunk(ctx context.Context, id string, _ int64, data []byte) (int64, bool, error) {
	if stored, ok, err := s.r.Have(ctx, id); ok || err != nil {
		return stored, false, err
	}
	n := s.sent.Add(1)
	if s.failAfter > 0 && n > s.failAfter {
		return 0, false, errRebooted
	}
	if s.corruptOne && n == 1 {
		data = bytes.Clone(data)
		data[0] ^= 1
		s.corruptID.Store(id)
	}
	stored, err := s.r.Put(ctx, id, data)
	return stored, true, err
}

// captureDisk is a disk of size bytes: every fourth chunk all zero, the
// others each distinct.
func captureDisk(size int) []byte {
	b := make([]byte, size)
	for off := 0; off < size; off += testChunk {
		if (off/testChunk)%4 == 2 {
			continue
		}
		for i := off; i < min(off+testChunk, size); i++ {
			b[i] = byte(i/7) ^ byte(off/testChunk)
		}
	}
	return b
}

// cutInto cuts data as a device does and commits it through a Receiver as
// the controller does.
func cutInto(t *testing.T, c *catalog.Catalog, version string, data []byte, sink *receiverSink) (string, *catalog.PushResult, error) {
	t.Helper()
	var digest string
	var res *catalog.PushResult
	err := c.Receive(t.Context(), "capture", version, func(ctx context.Context, r *catalog.Receiver) error {
		sink.r = r
		m, pr, err := catalog.Cut(ctx, bytes.NewReader(data), int64(len(data)),
			catalog.PushOptions{Name: "capture", Version: version, Kind: catalog.KindDisk, ChunkSize: testChunk}, sink)
		if err != nil {
			return err
		}
		res = pr
		m.Models = []string{"Latitude 7440"} // the receiving side tags it
		digest, err = r.Commit(ctx, m, catalog.PushOptions{})
		return err
	})
	return digest, res, err
}

// TestCutAndReceiveRoundTrip: a push cut in one place and stored by a
// Receiver in another pulls back the same bytes, with zero chunks not
// stored and the receiving side's model tag.
func TestCutAndReceiveRoundTrip(t *testing.T) {
	c, _ := fileCatalog(t)
	data := captureDisk(4<<20 + 777)
	digest, res, err := cutInto(t, c, "1", data, &receiverSink{})
	if err != nil {
		t.Fatalf("cut and receive = %v", err)
	}
	if res.ZeroChunks == 0 || res.NewChunks == 0 || res.NewChunks+res.ZeroChunks != res.Chunks {
		t.Errorf("result %+v: want zero chunks elided and every other chunk sent", res)
	}
	got, err := pull(t, c, "capture:1")
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("pull capture:1 = %d bytes, %v; want the %d bytes cut", len(got), err, len(data))
	}
	m, _, err := c.Manifest(t.Context(), catalog.Ref{Name: "capture", Digest: digest})
	if err != nil || len(m.Models) != 1 || m.Models[0] != "Latitude 7440" {
		t.Errorf("manifest %v, %v: want it tagged Latitude 7440", m, err)
	}
	if _, _, err := cutInto(t, c, "1", data, &receiverSink{}); !errors.Is(err, catalog.ErrVersionExists) {
		t.Errorf("receive capture:1 again = %v, want ErrVersionExists", err)
	}
}

// TestCutResumesAfterAReboot: a capture cut short (the device rebooted)
// leaves the chunks it stored; running it again sends only the others.
func TestCutResumesAfterAReboot(t *testing.T) {
	c, _ := fileCatalog(t)
	data := captureDisk(6 << 20)
	first := &receiverSink{failAfter: 5}
	if _, _, err := cutInto(t, c, "1", data, first); !errors.Is(err, errRebooted) {
		t.Fatalf("first capture = %v, want it cut short", err)
	}
	if _, _, err := c.Manifest(t.Context(), catalog.Ref{Name: "capture", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("capture:1 after the cut-short run = %v, want ErrNotFound", err)
	}
	before := len(keys(t, c, "chunks/"))
	if before == 0 {
		t.Fatal("the cut-short run stored no chunk")
	}
	again := &receiverSink{}
	digest, _, err := cutInto(t, c, "1", data, again)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := c.Manifest(t.Context(), catalog.Ref{Name: "capture", Digest: digest})
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for _, ch := range m.Chunks {
		if !ch.Zero {
			distinct[ch.ID] = true
		}
	}
	if got, want := int(again.sent.Load()), len(distinct)-before; got != want {
		t.Errorf("the run again sent %d chunks, want %d: the %d of %d stored before are skipped", got, want, before, len(distinct))
	}
	got, err := pull(t, c, "capture:1")
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Errorf("pull after resume = %d bytes, %v", len(got), err)
	}
}

// TestReceiverRefusesAChunkThatIsNotItsID: bytes sent under another
// chunk's id are refused naming the chunk, nothing is stored for them,
// and no version is made.
func TestReceiverRefusesAChunkThatIsNotItsID(t *testing.T) {
	c, dir := fileCatalog(t)
	data := captureDisk(2 << 20)
	sink := &receiverSink{corruptOne: true}
	_, _, err := cutInto(t, c, "1", data, sink)
	if !errors.Is(err, catalog.ErrChunkMismatch) {
		t.Fatalf("cut with a corrupt chunk = %v, want ErrChunkMismatch", err)
	}
	bad, _ := sink.corruptID.Load().(string)
	if bad == "" || !strings.Contains(err.Error(), bad) {
		t.Errorf("error %q does not name the chunk %s", err, bad)
	}
	for _, k := range keys(t, c, "chunks/") {
		if strings.HasSuffix(k, bad) {
			t.Errorf("the refused chunk is stored as %s (in %s)", k, dir)
		}
	}
	if _, _, err := c.Manifest(t.Context(), catalog.Ref{Name: "capture", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("capture:1 = %v, want ErrNotFound", err)
	}
}

// TestReceiverRefusesAManifestOfChunksNotOffered: a manifest that uses a
// chunk the catalog holds (another image's) but that was never offered in
// this push, or says another stored size than the store's, is refused and
// no version is made.
func TestReceiverRefusesAManifestOfChunksNotOffered(t *testing.T) {
	c, _ := fileCatalog(t)
	other := push(t, c, "other:1", bytes.Repeat([]byte("another image "), testChunk/14+1)[:testChunk], catalog.PushOptions{})
	data := captureDisk(2 * testChunk)
	for name, tc := range map[string]struct {
		change func(m *catalog.Manifest)
		says   string
	}{
		"another image's chunk": {func(m *catalog.Manifest) { m.Chunks[0] = other.Manifest.Chunks[0] }, "never offered"},
		"a wrong stored size":   {func(m *catalog.Manifest) { m.Chunks[0].Stored++ }, "stored"},
	} {
		err := c.Receive(t.Context(), "capture", "1", func(ctx context.Context, r *catalog.Receiver) error {
			m, _, err := catalog.Cut(ctx, bytes.NewReader(data), int64(len(data)),
				catalog.PushOptions{Name: "capture", Version: "1", Kind: catalog.KindDisk, ChunkSize: testChunk}, &receiverSink{r: r})
			if err != nil {
				return err
			}
			tc.change(m)
			_, err = r.Commit(ctx, m, catalog.PushOptions{})
			return err
		})
		if !errors.Is(err, catalog.ErrBadManifest) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Commit = %v, want ErrBadManifest saying %q", name, err, tc.says)
		}
		if _, _, err := c.Manifest(t.Context(), catalog.Ref{Name: "capture", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("%s: capture:1 = %v, want ErrNotFound", name, err)
		}
	}
}
