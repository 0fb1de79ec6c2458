package catalog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/internal/sample"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var minioServer testenv.SharedMinIO

func TestMain(m *testing.M) { minioServer.Main(m) }

const testChunk = 256 << 10

// backends returns a fresh catalog on each kind of store.
func backends(t *testing.T) map[string]*catalog.Catalog {
	t.Helper()
	out := map[string]*catalog.Catalog{}
	for name, url := range map[string]string{"file": "file://" + t.TempDir(), "s3": minioServer.Get(t).NewBucket(t)} {
		s, err := storage.Open(url, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := catalog.New(s, catalog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		out[name] = c
	}
	return out
}

func fileCatalog(t *testing.T) (*catalog.Catalog, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := storage.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(s, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func diskImage(t *testing.T, size int64, seed uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := sample.WriteDiskImage(&b, size, seed); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func push(t *testing.T, c *catalog.Catalog, ref string, data []byte, opts catalog.PushOptions) *catalog.PushResult {
	t.Helper()
	r, err := catalog.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	opts.Name, opts.Version, opts.ChunkSize = r.Name, r.Tag, testChunk
	if opts.Kind == "" {
		opts.Kind = catalog.KindDisk
	}
	res, err := c.Push(t.Context(), bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatalf("Push(%s) = %v", ref, err)
	}
	return res
}

func pull(t *testing.T, c *catalog.Catalog, ref string) ([]byte, error) {
	t.Helper()
	r, err := catalog.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := c.Manifest(t.Context(), r)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = c.Pull(t.Context(), m, &out, nil)
	return out.Bytes(), err
}

func TestPushPullRoundTrip(t *testing.T) {
	data := diskImage(t, 8<<20+12345, 1) // a short last chunk
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			res := push(t, c, "win11:2026.11", data, catalog.PushOptions{Models: []string{"Latitude 7440"}, Labels: map[string]string{"os": "win11"}})
			if res.ZeroChunks == 0 || res.NewChunks == 0 || res.NewChunks+res.ZeroChunks > res.Chunks {
				t.Errorf("Push result %+v: want some zero and some new chunks", res)
			}
			got, err := pull(t, c, "win11:2026.11")
			if err != nil {
				t.Fatalf("Pull = %v", err)
			}
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Errorf("pulled %d bytes differ from the %d pushed", len(got), len(data))
			}
			m, digest, err := c.Manifest(t.Context(), catalog.Ref{Name: "win11", Digest: res.Digest})
			if err != nil || digest != res.Digest || m.Models[0] != "Latitude 7440" || m.Labels["os"] != "win11" {
				t.Errorf("Manifest by digest = %v, %s, %v", m, digest, err)
			}
		})
	}
}

func TestZeroChunksAreNotStored(t *testing.T) {
	c, dir := fileCatalog(t)
	data := make([]byte, 4*testChunk)
	copy(data[testChunk:], "not zero")
	res := push(t, c, "z:1", data, catalog.PushOptions{})
	if res.ZeroChunks != 3 || res.NewChunks != 1 {
		t.Errorf("Push = %+v, want 3 zero chunks and 1 new", res)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "chunks", "*", "*"))
	if len(files) != 1 {
		t.Errorf("chunk objects = %d, want 1", len(files))
	}
	out := filepath.Join(t.TempDir(), "out.img")
	m, _, _ := c.Manifest(t.Context(), catalog.Ref{Name: "z", Tag: "1"})
	if err := c.PullFile(t.Context(), m, out, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data) {
		t.Errorf("PullFile content differs")
	}
}

func TestSecondVersionUploadsOnlyChangedChunks(t *testing.T) {
	c, _ := fileCatalog(t)
	v1 := diskImage(t, 40*testChunk, 2)
	r1 := push(t, c, "img:1", v1, catalog.PushOptions{})
	v2 := bytes.Clone(v1)
	changed := 0
	for i := 0; i < 40; i += 20 { // 2 of 40 chunks: 5%
		v2[i*testChunk+7] ^= 0xff
		changed++
	}
	r2 := push(t, c, "img:2", v2, catalog.PushOptions{})
	if r2.NewChunks > changed {
		t.Errorf("second version uploaded %d chunks, want at most %d", r2.NewChunks, changed)
	}
	if limit := r1.NewBytes * 6 / 100; r2.NewBytes > limit {
		t.Errorf("second version uploaded %d bytes, want at most 6%% of %d", r2.NewBytes, r1.NewBytes)
	}
	r3 := push(t, c, "img:3", v2, catalog.PushOptions{})
	if r3.NewBytes != 0 {
		t.Errorf("pushing the same bytes again uploaded %d bytes, want 0", r3.NewBytes)
	}
}

func TestVersionsNeverMoveChannelsDo(t *testing.T) {
	c, _ := fileCatalog(t)
	ctx := t.Context()
	r1 := push(t, c, "uni:1", []byte("one"), catalog.PushOptions{Channels: []string{"stable"}})
	_, err := c.Push(ctx, strings.NewReader("other"), 5, catalog.PushOptions{Name: "uni", Version: "1"})
	if !errors.Is(err, catalog.ErrVersionExists) {
		t.Errorf("push over an existing version = %v, want ErrVersionExists", err)
	}
	r2 := push(t, c, "uni:2", []byte("two"), catalog.PushOptions{})
	if d := resolve(t, c, "uni:stable"); d != r1.Digest {
		t.Errorf("uni:stable = %s, want %s", d, r1.Digest)
	}
	if err := c.SetChannel(ctx, "uni", "stable", r2.Digest); err != nil {
		t.Fatal(err)
	}
	if d := resolve(t, c, "uni:stable"); d != r2.Digest {
		t.Errorf("uni:stable after move = %s, want %s", d, r2.Digest)
	}
	if err := c.SetChannel(ctx, "uni", "1", r2.Digest); !errors.Is(err, catalog.ErrNameTaken) {
		t.Errorf("channel named like a version = %v, want ErrNameTaken", err)
	}
	images, err := c.List(ctx, "")
	if err != nil || len(images) != 2 || images[1].Version != "2" || images[1].Channels[0] != "stable" {
		t.Errorf("List = %+v, %v", images, err)
	}
}

func resolve(t *testing.T, c *catalog.Catalog, ref string) string {
	t.Helper()
	r, _ := catalog.ParseRef(ref)
	d, err := c.Resolve(t.Context(), r)
	if err != nil {
		t.Fatalf("Resolve(%s) = %v", ref, err)
	}
	return d
}

func TestUnknownImage(t *testing.T) {
	c, _ := fileCatalog(t)
	for _, ref := range []string{"nothing:1", "nothing@sha256:" + strings.Repeat("ab", 32)} {
		r, _ := catalog.ParseRef(ref)
		_, _, err := c.Manifest(t.Context(), r)
		if !errors.Is(err, catalog.ErrNotFound) || !strings.Contains(err.Error(), "nothing") {
			t.Errorf("Manifest(%s) = %v, want ErrNotFound naming it", ref, err)
		}
	}
}

func TestCorruptChunkIsNamedAndNeverWritten(t *testing.T) {
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			data := bytes.Repeat([]byte("abcdefgh"), 4*testChunk/8)
			for i := range 4 {
				data[i*testChunk] = byte(i) // four distinct chunks
			}
			res := push(t, c, "bad:1", data, catalog.PushOptions{})
			victim := res.Manifest.Chunks[2]
			key := "chunks/" + victim.ID[:2] + "/" + victim.ID
			for _, tc := range []struct {
				name    string
				content []byte
			}{
				{"other chunk", storedObject(t, c, res.Manifest.Chunks[1].ID)},
				{"truncated", storedObject(t, c, victim.ID)[:victim.Stored/2]},
				{"garbage", bytes.Repeat([]byte{0x55}, int(victim.Stored))},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if err := c.Store().Put(t.Context(), key, bytes.NewReader(tc.content), int64(len(tc.content))); err != nil {
						t.Fatal(err)
					}
					got, err := pull(t, c, "bad:1")
					var ce *catalog.ChunkError
					if !errors.As(err, &ce) || ce.Index != 2 || ce.Offset != victim.Offset || !errors.Is(err, catalog.ErrCorruptChunk) {
						t.Fatalf("Pull = %v, want ChunkError for chunk 2 at %d", err, victim.Offset)
					}
					if !bytes.Equal(got, data[:victim.Offset]) {
						t.Errorf("Pull wrote %d bytes, want exactly the %d before the bad chunk", len(got), victim.Offset)
					}
				})
			}
		})
	}
}

func storedObject(t *testing.T, c *catalog.Catalog, id string) []byte {
	t.Helper()
	rc, err := c.Store().Open(t.Context(), "chunks/"+id[:2]+"/"+id, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

func TestTamperedManifestIsRefused(t *testing.T) {
	c, dir := fileCatalog(t)
	res := push(t, c, "m:1", []byte("payload"), catalog.PushOptions{})
	p := filepath.Join(dir, "manifests", "sha256", strings.TrimPrefix(res.Digest, "sha256:"))
	b, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(b, []byte(`"size":7`), []byte(`"size":8`), 1), 0o644)
	if _, err := c.ManifestByDigest(t.Context(), res.Digest); !errors.Is(err, catalog.ErrBadManifest) {
		t.Errorf("ManifestByDigest(tampered) = %v, want ErrBadManifest", err)
	}
}

// failingReader fails after the first chunk, like a file on a dying disk.
type failingReader struct{ data []byte }

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= testChunk {
		return 0, errors.New("input/output error")
	}
	return copy(p, f.data[off:]), nil
}

func TestFailedPushMovesNoRef(t *testing.T) {
	c, _ := fileCatalog(t)
	ctx := t.Context()
	data := diskImage(t, 4*testChunk, 3)
	_, err := c.Push(ctx, failingReader{data}, int64(len(data)), catalog.PushOptions{Name: "f", Version: "1", ChunkSize: testChunk})
	if err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("Push from a failing reader = %v, want the read error", err)
	}
	_, err = c.PushFile(ctx, filepath.Join(t.TempDir(), "vanished.img"), catalog.PushOptions{Name: "f", Version: "1"})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PushFile(missing) = %v, want not exist", err)
	}
	if _, err := c.Resolve(ctx, catalog.Ref{Name: "f", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Resolve after failed pushes = %v, want ErrNotFound", err)
	}
}

func TestFileChangedDuringPushMovesNoRef(t *testing.T) {
	c, _ := fileCatalog(t)
	path := filepath.Join(t.TempDir(), "img")
	os.WriteFile(path, diskImage(t, 8*testChunk, 4), 0o644)
	var n atomic.Int32
	_, err := c.PushFile(t.Context(), path, catalog.PushOptions{Name: "g", Version: "1", ChunkSize: testChunk, Progress: func(int64) {
		if n.Add(1) == 2 {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("PushFile of a changing file = %v, want an error saying it changed", err)
	}
	if _, err := c.Resolve(t.Context(), catalog.Ref{Name: "g", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Resolve = %v, want ErrNotFound", err)
	}
}

func TestPushNonWIMAsWIMIsRefused(t *testing.T) {
	c, _ := fileCatalog(t)
	_, err := c.Push(t.Context(), strings.NewReader("MZ not a wim at all"), 19, catalog.PushOptions{Name: "w", Version: "1", Kind: catalog.KindWIM})
	if err == nil || !strings.Contains(err.Error(), "not a WIM") {
		t.Errorf("Push(non-WIM as wim) = %v, want a not-a-WIM error", err)
	}
}

func TestRemoveAndGC(t *testing.T) {
	c, dir := fileCatalog(t)
	ctx := t.Context()
	v1 := diskImage(t, 8*testChunk, 5)
	v2 := bytes.Clone(v1)
	copy(v2[3*testChunk:], "changed chunk")
	push(t, c, "app:1", v1, catalog.PushOptions{})
	push(t, c, "app:2", v2, catalog.PushOptions{Channels: []string{"stable"}})
	removed, err := c.Remove(ctx, catalog.Ref{Name: "app", Tag: "1"})
	if err != nil || len(removed) != 1 || removed[0].Ref.String() != "app:1" {
		t.Fatalf("Remove(app:1) = %q, %v", removed, err)
	}
	if _, err := c.Remove(ctx, catalog.Ref{Name: "app", Tag: "1"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("Remove again = %v, want ErrNotFound", err)
	}
	kept, err := c.GC(ctx, time.Hour, false)
	if err != nil || kept.Chunks != 0 || kept.Manifests != 0 || kept.KeptYoung != 1 {
		t.Errorf("GC inside the grace period = %+v, %v; want nothing deleted, one young chunk kept", kept, err)
	}
	res, err := c.GC(ctx, 0, false)
	if err != nil || res.Manifests != 1 || res.Chunks != 1 {
		t.Errorf("GC = %+v, %v; want app:1's manifest and its one own chunk deleted", res, err)
	}
	if got, err := pull(t, c, "app:stable"); err != nil || !bytes.Equal(got, v2) {
		t.Errorf("pull app:stable after gc = %v", err)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "manifests", "sha256", "*"))
	if len(manifests) != 1 {
		t.Errorf("manifests left = %d, want 1", len(manifests))
	}
}

func TestCanceledPullStops(t *testing.T) {
	c, _ := fileCatalog(t)
	push(t, c, "big:1", diskImage(t, 32*testChunk, 6), catalog.PushOptions{})
	m, _, _ := c.Manifest(t.Context(), catalog.Ref{Name: "big", Tag: "1"})
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	err := c.Stream(ctx, m, func(catalog.Chunk, []byte) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n > 3+1 {
		t.Errorf("Stream after cancel = %v after %d chunks, want Canceled right away", err, n)
	}
}

func TestRacingPushesOfOneVersionOneWins(t *testing.T) {
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			var wins, lost atomic.Int32
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					data := []byte(fmt.Sprintf("content %d", i))
					_, err := c.Push(t.Context(), bytes.NewReader(data), int64(len(data)), catalog.PushOptions{Name: "race", Version: "1"})
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, catalog.ErrVersionExists):
						lost.Add(1)
					default:
						t.Errorf("racing push = %v", err)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 || lost.Load() != 3 {
				t.Errorf("racing pushes: %d won, %d refused; want 1 and 3", wins.Load(), lost.Load())
			}
		})
	}
}
