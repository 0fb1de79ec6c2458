package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/imagefarm/imagefarm/internal/wait"
	"github.com/imagefarm/imagefarm/storage"
)

// Errors wrapped by a ChunkError.
var (
	// ErrCorruptChunk: the stored bytes are not the chunk they claim to be
	// (hash mismatch, wrong size, bad zstd frame, decompression bomb).
	ErrCorruptChunk = errors.New("catalog: corrupt chunk")
	// ErrStorageUnavailable: the store kept failing for the whole retry
	// budget. The error names the store and how long it was unreachable.
	ErrStorageUnavailable = errors.New("catalog: storage unavailable")
)

// ChunkError names the chunk that could not be read and why.
type ChunkError struct {
	Index  int
	Offset int64
	ID     string
	Err    error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d at offset %d (%s): %v", e.Index, e.Offset, shortID(e.ID), e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// HashMismatchError carries the check hash (BLAKE3) a chunk's bytes had and
// the one the manifest records.
type HashMismatchError struct{ Got, Want string }

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("%v: blake3 is %s, want %s", ErrCorruptChunk, shortID(e.Got), shortID(e.Want))
}

func (e *HashMismatchError) Unwrap() error { return ErrCorruptChunk }

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// codec compresses and decompresses chunks; its zstd encoder and decoder
// are safe for concurrent EncodeAll and DecodeAll.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newCodec(concurrency int) (*codec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(concurrency), zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(false)) // every read checks the chunk's BLAKE3 (Chunk.Check) instead
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(concurrency),
		zstd.WithDecoderMaxMemory(MaxChunkSize), zstd.WithDecoderMaxWindow(MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true)) // decode bounds each chunk by the capacity it passes
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, dec: dec}, nil
}

// chunkID returns the hex SHA-256 that names data.
func chunkID(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// CheckSum returns the hex BLAKE3-256 of data, the hash every read of a
// chunk is checked against. It is as strong as SHA-256 and three times as
// fast here, which is what lets a 2-core node verify faster than it
// decompresses; the manifest, named by its SHA-256, binds it to the chunk.
func CheckSum(data []byte) string {
	sum := blake3.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// fetchChunk downloads chunk c, decompresses it into buf (grown if needed)
// and checks its hash, retrying as retry says; so a dropped connection or
// an outage within the retry budget resumes at this chunk. A chunk that
// cannot be read fails with a ChunkError.
func (c *Catalog) fetchChunk(ctx context.Context, index int, ch Chunk, buf []byte) ([]byte, error) {
	var data []byte
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		data, err = c.fetchOnce(ctx, ch, buf)
		return err
	})
	if err != nil {
		return nil, &ChunkError{Index: index, Offset: ch.Offset, ID: ch.ID, Err: err}
	}
	return data, nil
}

// Backoff between attempts: doubling from minBackoff up to maxBackoff,
// jittered so that the nodes of a farm do not all come back at once.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 4 * time.Second
)

// retry calls fetch until it succeeds or fails for good. Transient errors
// (a lost connection, a refusal, a server error) are retried with backoff
// until they have gone on for the retry budget, and then fail with
// ErrStorageUnavailable; every attempt after the first failure is bounded
// by the budget. A corrupt chunk is fetched twice, since the first copy
// may have been damaged in flight; a missing object or denied access is
// not retried.
func (c *Catalog) retry(ctx context.Context, fetch func(context.Context) error) error {
	var failing time.Time // the first transient failure
	var last error        // the last error not caused by the budget's deadline
	corrupt := false
	pause := wait.Backoff{Min: minBackoff, Max: maxBackoff, Jitter: true}
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if !failing.IsZero() {
			actx, cancel = context.WithDeadline(ctx, failing.Add(c.retryBudget))
		}
		began := time.Now()
		err := fetch(actx)
		expired := actx.Err() != nil
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil || permanent(err):
			return err
		case errors.Is(err, ErrCorruptChunk):
			if corrupt {
				return err
			}
			corrupt = true
		case failing.IsZero():
			// From when the failing attempt began: the store's client may
			// have retried inside it for a while already.
			failing = began
		}
		if !expired || last == nil {
			last = err
		}
		sleep := pause.Next()
		if !failing.IsZero() {
			left := time.Until(failing.Add(c.retryBudget))
			if left <= 0 {
				return fmt.Errorf("%w: %s was unreachable for %v (%d attempts): %w",
					ErrStorageUnavailable, c.store, time.Since(failing).Round(time.Second/10), attempt, last)
			}
			sleep = min(sleep, left)
		}
		if !wait.Sleep(ctx, sleep) {
			return err
		}
	}
}

// permanent reports whether asking the store again cannot help.
func permanent(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrAccessDenied) ||
		errors.Is(err, storage.ErrNoBucket) || errors.Is(err, storage.ErrInvalidKey)
}

func (c *Catalog) fetchOnce(ctx context.Context, ch Chunk, buf []byte) ([]byte, error) {
	if c.cache == nil {
		cp := c.compressed.Get().(*[]byte)
		defer c.compressed.Put(cp)
		compressed, err := c.download(ctx, ch, cp)
		if err != nil {
			return nil, err
		}
		return c.decode(ch, compressed, buf)
	}
	cp := c.compressed.Get().(*[]byte)
	defer c.compressed.Put(cp)
	if compressed, ok := c.cache.read(ch.ID, *cp); ok {
		if data, err := c.decode(ch, compressed, buf); err == nil {
			c.cache.hits.Add(1)
			return data, nil
		}
	}
	// One fetch per chunk however many streams want it at once. Inside,
	// look at the cache again: another stream may have just fixed it, and
	// only a copy still bad here may be dropped.
	var leader []byte
	v, err, _ := c.flight.Do(ch.ID, func() (any, error) {
		if compressed, ok := c.cache.read(ch.ID, nil); ok {
			var err error
			if leader, err = c.decode(ch, compressed, buf); err == nil {
				c.cache.hits.Add(1)
				return compressed, nil
			}
			c.cache.corrupt.Add(1)
			c.cache.drop(ch.ID)
		}
		c.cache.misses.Add(1)
		compressed, err := c.download(ctx, ch, new([]byte))
		if err != nil {
			return nil, err
		}
		if leader, err = c.decode(ch, compressed, buf); err != nil {
			return nil, err
		}
		c.cache.put(ch.ID, compressed)
		return compressed, nil
	})
	switch {
	case err != nil:
		return nil, err
	case leader != nil:
		return leader, nil
	}
	return c.decode(ch, v.([]byte), buf)
}

// download reads chunk ch's stored object into *cp, growing it if needed.
// The store's reader ends cleanly only at the object's real end, so a
// body of another size than the manifest's is a corrupt object, while a
// body cut short is the store's (transient) error.
func (c *Catalog) download(ctx context.Context, ch Chunk, cp *[]byte) ([]byte, error) {
	rc, err := c.store.Open(ctx, chunkKey(ch.ID), 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if int64(cap(*cp)) < ch.Stored+1 {
		*cp = make([]byte, ch.Stored+1)
	}
	// Read one byte more than the manifest promises, to catch a longer object.
	compressed := (*cp)[:ch.Stored+1]
	n, err := io.ReadFull(rc, compressed)
	switch {
	case err == nil:
		return nil, fmt.Errorf("%w: stored object is longer than the %d bytes the manifest says", ErrCorruptChunk, ch.Stored)
	case (err == io.EOF || err == io.ErrUnexpectedEOF) && int64(n) < ch.Stored:
		return nil, fmt.Errorf("%w: stored object is %d bytes, manifest says %d", ErrCorruptChunk, n, ch.Stored)
	case err != io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("download: %w", err)
	}
	return compressed[:n], nil
}

// decode decompresses a chunk into buf and checks it. The decoder may
// write no more than the chunk's length into buf, so a frame that claims
// or produces more (a decompression bomb) is refused having allocated at
// most about one chunk.
func (c *Catalog) decode(ch Chunk, compressed, buf []byte) ([]byte, error) {
	if int64(cap(buf)) < ch.Length {
		buf = make([]byte, ch.Length)
	}
	data, err := c.codec.dec.DecodeAll(compressed, buf[:0:ch.Length])
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrCorruptChunk, err)
	}
	if int64(len(data)) != ch.Length {
		return nil, fmt.Errorf("%w: decompressed to %d bytes, want %d", ErrCorruptChunk, len(data), ch.Length)
	}
	if got := CheckSum(data); got != ch.Check {
		return nil, &HashMismatchError{Got: got, Want: ch.Check}
	}
	return data, nil
}

// putChunk stores data under its id unless the store has it already, in
// which case it is touched so a concurrent gc keeps it. It returns the
// stored size and whether bytes were uploaded.
func (c *Catalog) putChunk(ctx context.Context, id string, data, scratch []byte) (stored int64, uploaded bool, err error) {
	key := chunkKey(id)
	info, err := c.store.Stat(ctx, key)
	if err == nil {
		return info.Size, false, c.store.Touch(ctx, key)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return 0, false, err
	}
	compressed := c.codec.enc.EncodeAll(data, scratch[:0])
	if err := c.store.Put(ctx, key, bytes.NewReader(compressed), int64(len(compressed))); err != nil {
		return 0, false, err
	}
	return int64(len(compressed)), true, nil
}
