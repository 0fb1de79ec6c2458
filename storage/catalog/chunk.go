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

	"github.com/imagefarm/imagefarm/storage"
)

// ErrCorruptChunk is wrapped by every ChunkError whose stored bytes are not
// the chunk they claim to be (hash mismatch, truncation, bad zstd frame).
var ErrCorruptChunk = errors.New("catalog: corrupt chunk")

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
		zstd.WithEncoderCRC(false)) // the chunk's SHA-256 is checked instead
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(concurrency),
		zstd.WithDecoderMaxMemory(MaxChunkSize), zstd.WithDecoderMaxWindow(MaxChunkSize))
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

// fetchAttempts bounds how often one chunk is downloaded before its read
// fails; the store's client retries each request on top of this.
const fetchAttempts = 4

// fetchChunk downloads chunk c, decompresses it into buf (grown if needed)
// and checks its hash. Transient failures are retried with backoff, so a
// dropped connection resumes at this chunk; a chunk that stays corrupt or
// missing fails with a ChunkError.
func (c *Catalog) fetchChunk(ctx context.Context, index int, ch Chunk, buf []byte) ([]byte, error) {
	var err error
	for attempt := range fetchAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(250<<attempt) * time.Millisecond):
			}
		}
		var data []byte
		data, err = c.fetchOnce(ctx, ch, buf)
		if err == nil {
			return data, nil
		}
		// A corrupt object is fetched twice (the first copy may have been
		// damaged in flight); a missing one or a refusal will not change.
		permanent := errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrAccessDenied) ||
			(errors.Is(err, ErrCorruptChunk) && attempt > 0)
		if ctx.Err() != nil || permanent {
			break
		}
	}
	return nil, &ChunkError{Index: index, Offset: ch.Offset, ID: ch.ID, Err: err}
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
	case err == io.ErrUnexpectedEOF && int64(n) < ch.Stored:
		return nil, fmt.Errorf("%w: stored object is %d bytes, manifest says %d", ErrCorruptChunk, n, ch.Stored)
	case err != io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("download: %w", err)
	}
	return compressed[:n], nil
}

// decode decompresses a chunk into buf and checks it.
func (c *Catalog) decode(ch Chunk, compressed, buf []byte) ([]byte, error) {
	data, err := c.codec.dec.DecodeAll(compressed, buf[:0])
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
