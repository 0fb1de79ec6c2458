package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/storage"
)

// A push can be cut in one process and stored by another: a netbooted
// device capturing its disk cuts it (Cut) and hands each chunk to the
// controller, which holds the store and checks and stores the chunks
// (Receiver), then stores the manifest the device built and commits it.
// Both halves are the push's own code: the same chunking, zero chunks,
// deduplication and manifest.

// ErrChunkMismatch: bytes sent as a chunk are not the chunk their id
// names. Nothing is stored for them.
var ErrChunkMismatch = errors.New("catalog: chunk bytes do not match their id")

// ChunkSink stores the chunks a push cuts in another process than the
// one that holds the store.
type ChunkSink interface {
	// PutChunk stores data, the chunk at offset named id (the hex SHA-256
	// of data), unless the store has it already. It returns the stored
	// (compressed) size and whether the bytes were sent.
	PutChunk(ctx context.Context, id string, offset int64, data []byte) (stored int64, sent bool, err error)
}

// sinkWindow is how many chunks Cut has in flight at once.
const sinkWindow = 4

// Cut cuts size bytes of src into the manifest opts describe as Push
// does (zero chunks elided, each distinct chunk once), handing every other
// chunk to sink. It stores no manifest and no ref: the sink's side does
// (Receiver.Commit). opts.Channels, SignKey and Refs are not used.
func Cut(ctx context.Context, src io.ReaderAt, size int64, opts PushOptions, sink ChunkSink) (*Manifest, *PushResult, error) {
	m := manifestHeader(size, &opts)
	if err := checkHeader(m); err != nil {
		return nil, nil, err
	}
	window := max(1, min(sinkWindow, int(memoryBudget/(2*m.ChunkSize))))
	put := func(ctx context.Context, ch *Chunk, data, _ []byte) (int64, bool, error) {
		return sink.PutChunk(ctx, ch.ID, ch.Offset, data)
	}
	res, err := pushChunks(ctx, src, m, opts.Progress, window, put)
	if err != nil {
		return nil, nil, fmt.Errorf("cut %s:%s: %w", m.Name, m.Version, err)
	}
	res.Manifest = m
	return m, res, nil
}

// Receiver stores the chunks of a push cut elsewhere (Cut), each
// checked against its id, and commits the manifest built there. Its
// methods may be called from several goroutines.
type Receiver struct {
	c             *Catalog
	mk            *marker
	name, version string
	mu            sync.Mutex
	checks        map[string]string // id -> check hash of the chunks received
	sizes         map[string]int64  // id -> stored size of the chunks offered (received, or held already)
}

// Receive runs fn with a Receiver for a new version name:version, while a
// push marker keeps a gc off what it stores. A version that exists (or a
// bad name) is refused before fn runs.
func (c *Catalog) Receive(ctx context.Context, name, version string, fn func(context.Context, *Receiver) error) error {
	if err := c.CheckNewVersion(ctx, name, version, nil); err != nil {
		return err
	}
	return c.whileMarked(ctx, uploadsPrefix, func(ctx context.Context, mk *marker) error {
		return fn(ctx, &Receiver{c: c, mk: mk, name: name, version: version, checks: map[string]string{}, sizes: map[string]int64{}})
	})
}

// Have reports whether the store holds the chunk named id, and its stored
// size; a chunk it holds is touched, so that a gc running now keeps it.
func (r *Receiver) Have(ctx context.Context, id string) (stored int64, ok bool, err error) {
	if err := ident.ChunkID(id); err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	info, err := r.c.store.Stat(ctx, chunkKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if err := r.c.store.Touch(ctx, chunkKey(id)); err != nil {
		return 0, false, err
	}
	r.mu.Lock()
	r.sizes[id] = info.Size
	r.mu.Unlock()
	return info.Size, true, nil
}

// Put stores data as the chunk named id once it has checked that data is
// that chunk (ErrChunkMismatch, nothing stored, otherwise). It returns the
// stored size.
func (r *Receiver) Put(ctx context.Context, id string, data []byte) (int64, error) {
	if err := ident.ChunkID(id); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if int64(len(data)) > MaxChunkSize {
		return 0, fmt.Errorf("%w: chunk %s is %d bytes, more than %d", ErrChunkMismatch, shortID(id), len(data), MaxChunkSize)
	}
	if got := chunkID(data); got != id {
		return 0, fmt.Errorf("%w: chunk %s: its %d bytes have SHA-256 %s", ErrChunkMismatch, id, len(data), got)
	}
	scratch := make([]byte, 0, maxStored(int64(len(data))))
	stored, _, err := r.c.putChunk(ctx, id, data, scratch)
	if err != nil {
		return 0, fmt.Errorf("store chunk %s: %w", shortID(id), err)
	}
	r.mu.Lock()
	r.checks[id], r.sizes[id] = CheckSum(data), stored
	r.mu.Unlock()
	return stored, nil
}

// Commit stores m, the manifest of the push, and points name:version at
// it, signing it first with opts.SignKey when set, through opts.Refs as
// Push does. m must be name:version; every chunk it uses must have been
// offered to this Receiver (Have or Put), with the stored size it answered,
// and those received must have the check hashes m says.
func (r *Receiver) Commit(ctx context.Context, m *Manifest, opts PushOptions) (string, error) {
	if m.Name != r.name || m.Version != r.version {
		return "", fmt.Errorf("%w: the manifest is %s:%s, the push %s:%s", ErrBadManifest, m.Name, m.Version, r.name, r.version)
	}
	if err := m.Validate(); err != nil {
		return "", err
	}
	if err := r.checkChunks(m); err != nil {
		return "", err
	}
	return r.c.storeManifest(ctx, r.mk, m, opts, nil)
}

// checkChunks checks m's chunks against what this Receiver was offered.
func (r *Receiver) checkChunks(m *Manifest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ch := range m.Chunks {
		if ch.Zero {
			continue
		}
		size, offered := r.sizes[ch.ID]
		want, received := r.checks[ch.ID]
		switch {
		case !offered:
			return fmt.Errorf("%w: chunk %d at offset %d (%s) was never offered in this push", ErrBadManifest, i, ch.Offset, shortID(ch.ID))
		case ch.Stored != size:
			return fmt.Errorf("%w: chunk %d at offset %d (%s) says %d bytes stored, the store %d", ErrBadManifest, i, ch.Offset, shortID(ch.ID), ch.Stored, size)
		case received && ch.Check != want:
			return fmt.Errorf("%w: chunk %d at offset %d (%s) has check hash %s, its bytes %s",
				ErrBadManifest, i, ch.Offset, shortID(ch.ID), shortID(ch.Check), shortID(want))
		}
	}
	return nil
}
