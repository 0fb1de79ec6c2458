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
}

// Receive runs fn with a Receiver for a new version name:version, while a
// push marker keeps a gc off what it stores. A version that exists (or a
// bad name) is refused before fn runs.
func (c *Catalog) Receive(ctx context.Context, name, version string, fn func(context.Context, *Receiver) error) error {
	if err := c.CheckNewVersion(ctx, name, version, nil); err != nil {
		return err
	}
	return c.whileMarked(ctx, uploadsPrefix, func(ctx context.Context, mk *marker) error {
		return fn(ctx, &Receiver{c: c, mk: mk, name: name, version: version, checks: map[string]string{}})
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
	return info.Size, true, r.c.store.Touch(ctx, chunkKey(id))
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
	r.checks[id] = CheckSum(data)
	r.mu.Unlock()
	return stored, nil
}

// Commit stores m, the manifest of the push, and points name:version at
// it, signing it first with opts.SignKey when set, through opts.Refs as
// Push does. m must be name:version, and the chunks received must have
// the check hashes m says; every chunk m uses must be stored.
func (r *Receiver) Commit(ctx context.Context, m *Manifest, opts PushOptions) (string, error) {
	if m.Name != r.name || m.Version != r.version {
		return "", fmt.Errorf("%w: the manifest is %s:%s, the push %s:%s", ErrBadManifest, m.Name, m.Version, r.name, r.version)
	}
	if err := m.Validate(); err != nil {
		return "", err
	}
	r.mu.Lock()
	for i, ch := range m.Chunks {
		if want, ok := r.checks[ch.ID]; ok && !ch.Zero && ch.Check != want {
			r.mu.Unlock()
			return "", fmt.Errorf("%w: chunk %d at offset %d (%s) has check hash %s, its bytes %s",
				ErrBadManifest, i, ch.Offset, shortID(ch.ID), shortID(ch.Check), shortID(want))
		}
	}
	r.mu.Unlock()
	return r.c.storeManifest(ctx, r.mk, m, opts, nil)
}
