package catalog

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sync/errgroup"
)

// Buffer holds one chunk's verified bytes, aligned for O_DIRECT writes.
// StreamFrom hands each Buffer to its callback holding one reference, which
// it drops when the callback returns; a holder that keeps the Buffer longer
// calls Retain first and Release when done with it.
type Buffer struct {
	Data []byte
	refs atomic.Int32
	pool *bufferPool
}

// Retain adds a reference.
func (b *Buffer) Retain() { b.refs.Add(1) }

// Release drops a reference; the last one returns the buffer to its pool.
func (b *Buffer) Release() {
	if b.refs.Add(-1) == 0 {
		b.pool.p.Put(b)
	}
}

type bufferPool struct{ p sync.Pool }

// Alignment of chunk buffers: enough for O_DIRECT on any block device.
const Alignment = 4096

func newBufferPool(size int64) *bufferPool {
	bp := &bufferPool{}
	bp.p.New = func() any { return &Buffer{Data: AlignedBytes(int(size)), pool: bp} }
	return bp
}

func (bp *bufferPool) get() *Buffer {
	b := bp.p.Get().(*Buffer)
	b.refs.Store(1)
	return b
}

// AlignedBytes returns n bytes whose first byte is aligned to Alignment.
func AlignedBytes(n int) []byte {
	b := make([]byte, n+Alignment)
	skip := (Alignment - int(uintptr(unsafe.Pointer(&b[0]))%Alignment)) % Alignment
	return b[skip : skip+n : skip+n]
}

// IsAligned reports whether b starts at a multiple of Alignment.
func IsAligned(b []byte) bool {
	return cap(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Alignment == 0
}

// Stream reads the blob m describes in order and calls fn with every chunk
// and its verified bytes; data is nil for a zero chunk and is valid only
// until fn returns. See StreamFrom.
func (c *Catalog) Stream(ctx context.Context, m *Manifest, fn func(ch Chunk, data []byte) error) error {
	return c.StreamFrom(ctx, m, 0, func(_ int, ch Chunk, b *Buffer) error {
		if b == nil {
			return fn(ch, nil)
		}
		return fn(ch, b.Data)
	})
}

// StreamFrom reads the chunks of m from index from on, in order, and calls
// fn with each chunk's index, the chunk and its verified bytes (nil for a
// zero chunk). Chunks are fetched and decompressed in parallel a bounded
// window ahead of fn, so memory stays a few chunks whatever the blob's size.
// The first chunk that cannot be read ends the stream with a ChunkError; fn
// never sees bytes that failed their check.
func (c *Catalog) StreamFrom(ctx context.Context, m *Manifest, from int, fn func(i int, ch Chunk, b *Buffer) error) error {
	pool := newBufferPool(m.ChunkSize)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	// futures holds one slot per chunk in flight; its capacity is the window.
	futures := make(chan chan fetched, c.window(m.ChunkSize))
	g.Go(func() error {
		defer close(futures)
		for i := from; i < len(m.Chunks); i++ {
			fut := make(chan fetched, 1)
			select {
			case futures <- fut:
			case <-ctx.Done():
				return nil
			}
			if m.Chunks[i].Zero {
				fut <- fetched{}
				continue
			}
			g.Go(func() error {
				b := pool.get()
				data, err := c.fetchChunk(ctx, i, m.Chunks[i], b.Data)
				if err != nil {
					b.Release()
					b = nil
				} else {
					b.Data = data
				}
				fut <- fetched{b, err}
				return nil
			})
		}
		return nil
	})
	err := consume(ctx, futures, from, m, fn)
	cancel()
	for fut := range futures { // let the producer see the cancel and stop
		if r := <-fut; r.buf != nil {
			r.buf.Release()
		}
	}
	g.Wait()
	return err
}

// fetched is one chunk of a stream, or why it could not be read.
type fetched struct {
	buf *Buffer
	err error
}

// consume calls fn for each fetched chunk in order until the first error.
func consume(ctx context.Context, futures chan chan fetched, from int, m *Manifest, fn func(int, Chunk, *Buffer) error) error {
	i := from
	for fut := range futures {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := <-fut
		if r.err != nil {
			return r.err
		}
		err := fn(i, m.Chunks[i], r.buf)
		if r.buf != nil {
			r.buf.Release()
		}
		if err != nil {
			return err
		}
		i++
	}
	return ctx.Err()
}

// ReadChunk reads chunk i of m into buf (grown if needed) and verifies it,
// through the cache when the catalog has one. A zero chunk reads as zeros.
func (c *Catalog) ReadChunk(ctx context.Context, m *Manifest, i int, buf []byte) ([]byte, error) {
	ch := m.Chunks[i]
	if int64(cap(buf)) < ch.Length {
		buf = make([]byte, ch.Length)
	}
	if ch.Zero {
		buf = buf[:ch.Length]
		clear(buf)
		return buf, nil
	}
	return c.fetchChunk(ctx, i, ch, buf)
}
