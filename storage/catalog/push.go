package catalog

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
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/wim"
)

// ErrChunkGone: a chunk a push uploaded or reused was deleted before the
// push could point a ref at it. Pushing again stores it again.
var ErrChunkGone = errors.New("catalog: chunk deleted during the push")

// PushOptions describe the blob being pushed.
type PushOptions struct {
	Name, Version string
	Kind          Kind // KindFile when empty
	Models        []string
	Labels        map[string]string
	Channels      []string // channels to point at the new version
	ChunkSize     int64    // DefaultChunkSize when 0
	Source        string   // the file's base name, recorded in the manifest
	// SignKey, if set, signs the manifest before any ref points at it,
	// so that no imager ever sees the new version unsigned.
	SignKey *SigningKey
	// Refs writes the signature and the refs once the chunks and the
	// manifest are stored; the catalog itself when nil.
	Refs RefWriter
	// Progress, if set, is called with the number of bytes of the blob just
	// processed. It is called from several goroutines.
	Progress func(n int64)
}

// PushResult says what a push stored.
type PushResult struct {
	Digest     string
	Manifest   *Manifest
	Chunks     int   // chunks in the blob
	ZeroChunks int   // all-zero chunks, not stored
	NewChunks  int   // chunks uploaded by this push
	NewBytes   int64 // compressed bytes uploaded by this push
}

// PushFile pushes the file at path. If the file changes size or time while
// it is read, the push fails and no ref moves.
func (c *Catalog) PushFile(ctx context.Context, path string, opts PushOptions) (*PushResult, error) {
	f, err := userpath.Open(path)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("push %s: not a regular file", path)
	}
	if opts.Source == "" {
		opts.Source = filepath.Base(path)
	}
	unchanged := func() error {
		after, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("push %s: file vanished while it was read: %w", path, err)
		}
		if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
			return fmt.Errorf("push %s: file changed while it was read; push it again when nothing writes it", path)
		}
		return nil
	}
	res, err := c.push(ctx, f, before.Size(), opts, unchanged)
	if err != nil {
		// A read cut short by a truncation says more as the file's change.
		if cerr := unchanged(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return res, nil
}

// Push chunks size bytes of src into the store, writes the manifest and
// then points name:version and the channels at it. Chunks the store already
// holds are not uploaded again. Nothing is pointed at a manifest until all
// its chunks are stored.
func (c *Catalog) Push(ctx context.Context, src io.ReaderAt, size int64, opts PushOptions) (*PushResult, error) {
	return c.push(ctx, src, size, opts, nil)
}

func (c *Catalog) push(ctx context.Context, src io.ReaderAt, size int64, opts PushOptions, beforeCommit func() error) (*PushResult, error) {
	m, err := c.newManifest(ctx, src, size, &opts)
	if err != nil {
		return nil, err
	}
	// The upload marker keeps a gc off this push's objects (see markerTTL).
	var res *PushResult
	var pushErr error
	err = c.whileMarked(ctx, uploadsPrefix, func(ctx context.Context, mk *marker) error {
		res, pushErr = c.pushMarked(ctx, mk, src, m, opts, beforeCommit)
		return pushErr
	})
	if err != nil && err != pushErr {
		return nil, fmt.Errorf("push %s:%s: %w", m.Name, m.Version, err)
	}
	return res, err
}

func (c *Catalog) pushMarked(ctx context.Context, mk *marker, src io.ReaderAt, m *Manifest, opts PushOptions, beforeCommit func() error) (*PushResult, error) {
	res, err := pushChunks(ctx, src, m, opts.Progress, c.window(m.ChunkSize), c.storeChunk)
	if err != nil {
		return nil, fmt.Errorf("push %s:%s: %w", m.Name, m.Version, err)
	}
	digest, err := c.storeManifest(ctx, mk, m, opts, beforeCommit)
	if err != nil {
		return nil, err
	}
	res.Digest, res.Manifest = digest, m
	return res, nil
}

// storeManifest is the end of every push, whoever cut its chunks: it
// makes sure every chunk m uses is stored, stores m, and commits its refs.
func (c *Catalog) storeManifest(ctx context.Context, mk *marker, m *Manifest, opts PushOptions, beforeCommit func() error) (string, error) {
	if err := c.checkChunks(ctx, mk, m); err != nil {
		return "", fmt.Errorf("push %s:%s: %w", m.Name, m.Version, err)
	}
	data, digest, err := m.Encode()
	if err != nil {
		return "", err
	}
	if err := c.store.Put(ctx, manifestKey(digest), bytes.NewReader(data), int64(len(data))); err != nil {
		return "", fmt.Errorf("push %s:%s: manifest: %w", m.Name, m.Version, err)
	}
	if beforeCommit != nil {
		if err := beforeCommit(); err != nil {
			return "", err
		}
	}
	if err := c.commit(ctx, mk, m, digest, opts); err != nil {
		return "", err
	}
	return digest, nil
}

// commit points refs at the pushed manifest through opts.Refs (the
// catalog itself when nil): the signature first, so that no imager ever
// sees the new version unsigned, then the version, then the channels.
func (c *Catalog) commit(ctx context.Context, mk *marker, m *Manifest, digest string, opts PushOptions) error {
	refs := opts.Refs
	if refs == nil {
		refs = c
	}
	if k := opts.SignKey; k != nil {
		if err := refs.AddSignature(ctx, digest, k.Public(""), k.SignImage(m, digest)); err != nil {
			return fmt.Errorf("push %s:%s: sign: %w", m.Name, m.Version, err)
		}
	}
	if err := commitVersion(ctx, mk, refs, m, digest); err != nil {
		return fmt.Errorf("push %s:%s: %w", m.Name, m.Version, err)
	}
	for _, ch := range opts.Channels {
		if err := refs.SetChannel(ctx, m.Name, ch, digest); err != nil {
			return fmt.Errorf("push %s:%s: channel %s: %w", m.Name, m.Version, ch, err)
		}
	}
	return nil
}

// commitVersion points name:version at digest while the push's marker is
// fresh, so no gc that wrote it off has deleted a chunk the version needs.
func commitVersion(ctx context.Context, mk *marker, refs RefWriter, m *Manifest, digest string) error {
	ctx, cancel := mk.bound(ctx)
	defer cancel()
	if err := mk.fresh(); err != nil {
		return err
	}
	return refs.CreateVersion(ctx, m.Name, m.Version, digest)
}

// checkChunks is the last step before a push writes its manifest: it
// waits for the gcs running now to end (they may have missed the push's
// marker or a chunk's touch), and then makes sure every chunk m uses is
// still stored. A gc that starts later keeps them all (see markerTTL).
func (c *Catalog) checkChunks(ctx context.Context, mk *marker, m *Manifest) error {
	gcs, err := c.liveMarkers(ctx, gcPrefix, func(context.Context, string) error { return nil })
	if err != nil {
		return err
	}
	for key := range gcs {
		if err := c.waitEnded(ctx, key); err != nil {
			return fmt.Errorf("wait for %s to end: %w", key, err)
		}
	}
	if err := mk.touch(ctx); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency)
	seen := map[string]bool{}
	for i, ch := range m.Chunks {
		if ch.Zero || seen[ch.ID] {
			continue
		}
		seen[ch.ID] = true
		g.Go(func() error {
			_, err := c.store.Stat(ctx, chunkKey(ch.ID))
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("chunk %d at offset %d (%s) was deleted while the push ran (by a gc?); push again: %w",
					i, ch.Offset, shortID(ch.ID), ErrChunkGone)
			}
			return err
		})
	}
	return g.Wait()
}

// newManifest checks everything that can be checked before a byte is
// uploaded and returns the manifest without its chunks.
func (c *Catalog) newManifest(ctx context.Context, src io.ReaderAt, size int64, opts *PushOptions) (*Manifest, error) {
	m := manifestHeader(size, opts)
	if err := c.checkNew(ctx, m, opts.Channels); err != nil {
		return nil, err
	}
	if m.Kind == KindWIM {
		info, err := wim.Read(src, size)
		if err != nil {
			return nil, fmt.Errorf("push %s:%s as wim: %w (push it with another --kind if it is not a WIM)", m.Name, m.Version, err)
		}
		m.WIM = info
	}
	return m, nil
}

// manifestHeader is the manifest opts describe, without its chunks.
func manifestHeader(size int64, opts *PushOptions) *Manifest {
	m := &Manifest{
		SchemaVersion: SchemaVersion, Name: opts.Name, Version: opts.Version, Kind: opts.Kind,
		Size: size, ChunkSize: opts.ChunkSize, Created: time.Now().UTC(),
		Models: opts.Models, Labels: opts.Labels, Source: opts.Source,
	}
	if m.Kind == "" {
		m.Kind = KindFile
	}
	if m.ChunkSize == 0 {
		m.ChunkSize = DefaultChunkSize
	}
	return m
}

// CheckNewVersion returns the error a push of name:version with those
// channels would fail with on the refs it makes: a bad name, a taken
// version or a channel that is a version. It reads only; a push checks it
// again, so this is the early answer, before anything is uploaded.
func (c *Catalog) CheckNewVersion(ctx context.Context, name, version string, channels []string) error {
	if err := ident.Ref(name + ":" + version); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRef, err)
	}
	return c.checkNames(ctx, name, version, channels)
}

func (c *Catalog) checkNew(ctx context.Context, m *Manifest, channels []string) error {
	if err := checkHeader(m); err != nil {
		return err
	}
	return c.checkNames(ctx, m.Name, m.Version, channels)
}

// checkHeader checks the fields of m but its chunks.
func checkHeader(m *Manifest) error {
	// Validate the header fields with a placeholder chunk list.
	probe := *m
	probe.Size, probe.Chunks = 0, nil
	if err := probe.Validate(); err != nil {
		return err
	}
	if err := ident.Labels(m.Labels); err != nil {
		return fmt.Errorf("push %s:%s: %w", m.Name, m.Version, err)
	}
	return nil
}

// checkNames checks that version and channels may name a new image of
// name: the version free, each channel not a version.
func (c *Catalog) checkNames(ctx context.Context, name, version string, channels []string) error {
	for _, ch := range channels {
		if err := ident.Channel(ch); err != nil {
			return fmt.Errorf("%w: %w", ErrBadRef, err)
		}
		if ch == version {
			return fmt.Errorf("%w: channel %q has the same name as the version", ErrBadRef, ch)
		}
		if err := c.checkFree(ctx, name, ch, kindChannel); err != nil {
			return err
		}
	}
	if err := c.checkFree(ctx, name, version, kindVersion); err != nil {
		return err
	}
	if d, err := c.readRef(ctx, versionKey(name, version)); err == nil {
		return fmt.Errorf("%w: %s:%s is %s; push a new version (versions never change, channels move)", ErrVersionExists, name, version, d)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("push %s:%s: %w", name, version, err)
	}
	return nil
}

// chunkPusher uploads the chunks of one push in parallel, each distinct
// chunk once even when the blob repeats it.
type chunkPusher struct {
	put     putFunc
	bufs    sync.Pool
	mu      sync.Mutex
	pending map[string]*upload
	res     PushResult
	newN    atomic.Int64
	newB    atomic.Int64
}

type upload struct {
	done   chan struct{}
	stored int64
	err    error
}

// putFunc stores chunk ch, whose bytes are data, unless it is stored
// already; scratch is room for its compressed bytes. It returns the stored
// size and whether bytes were uploaded.
type putFunc func(ctx context.Context, ch *Chunk, data, scratch []byte) (stored int64, uploaded bool, err error)

// storeChunk is the putFunc of a push into the catalog's own store.
func (c *Catalog) storeChunk(ctx context.Context, ch *Chunk, data, scratch []byte) (int64, bool, error) {
	return c.putChunk(ctx, ch.ID, data, scratch)
}

// pushChunks cuts m.Size bytes of src into m's chunks, window of them at
// once, and hands each distinct chunk that is not all zero to put.
func pushChunks(ctx context.Context, src io.ReaderAt, m *Manifest, progress func(int64), window int, put putFunc) (*PushResult, error) {
	p := &chunkPusher{put: put, pending: map[string]*upload{}}
	p.bufs.New = func() any { b := make([]byte, 2*m.ChunkSize+4096); return &b }
	n := (m.Size + m.ChunkSize - 1) / m.ChunkSize
	m.Chunks = make([]Chunk, n)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(window)
	for i := range m.Chunks {
		off := int64(i) * m.ChunkSize
		m.Chunks[i] = Chunk{Offset: off, Length: min(m.ChunkSize, m.Size-off)}
		g.Go(func() error {
			if err := p.one(ctx, src, &m.Chunks[i]); err != nil {
				return fmt.Errorf("chunk %d at offset %d: %w", i, off, err)
			}
			if progress != nil {
				progress(m.Chunks[i].Length)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	p.res.Chunks = len(m.Chunks)
	p.res.NewChunks, p.res.NewBytes = int(p.newN.Load()), p.newB.Load()
	for _, ch := range m.Chunks {
		if ch.Zero {
			p.res.ZeroChunks++
		}
	}
	return &p.res, nil
}

func (p *chunkPusher) one(ctx context.Context, src io.ReaderAt, ch *Chunk) error {
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	data, scratch := (*bp)[:ch.Length], (*bp)[ch.Length:]
	if n, err := src.ReadAt(data, ch.Offset); n < len(data) {
		return fmt.Errorf("read source: %w", cmpEOF(err))
	}
	if IsZero(data) {
		ch.Zero = true
		return nil
	}
	ch.ID, ch.Check = chunkID(data), CheckSum(data)
	p.mu.Lock()
	u, seen := p.pending[ch.ID]
	if !seen {
		u = &upload{done: make(chan struct{})}
		p.pending[ch.ID] = u
	}
	p.mu.Unlock()
	if !seen {
		var uploaded bool
		u.stored, uploaded, u.err = p.put(ctx, ch, data, scratch)
		if uploaded {
			p.newN.Add(1)
			p.newB.Add(u.stored)
		}
		close(u.done)
	}
	select {
	case <-u.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	ch.Stored = u.stored
	return u.err
}

// cmpEOF turns the io.EOF of a short ReadAt into the error it means here.
func cmpEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

var zeroBlock [64 << 10]byte

// IsZero reports whether every byte of b is zero.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
