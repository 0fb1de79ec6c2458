package catalog

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Stream reads the blob m describes in order and calls fn with every chunk
// and its verified bytes; data is nil for a zero chunk and is valid only
// until fn returns. Chunks are downloaded and decompressed in parallel a
// bounded window ahead of fn, so memory stays a few chunks whatever the
// blob's size. The first chunk that cannot be read ends the stream with a
// ChunkError; fn never sees bytes that failed their hash.
func (c *Catalog) Stream(ctx context.Context, m *Manifest, fn func(ch Chunk, data []byte) error) error {
	type result struct {
		buf *[]byte
		err error
	}
	var bufs sync.Pool
	bufs.New = func() any { b := make([]byte, m.ChunkSize); return &b }
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	// futures holds one slot per chunk in flight; its capacity is the window.
	futures := make(chan chan result, c.concurrency)
	g.Go(func() error {
		defer close(futures)
		for i, ch := range m.Chunks {
			fut := make(chan result, 1)
			select {
			case futures <- fut:
			case <-ctx.Done():
				return nil
			}
			if ch.Zero {
				fut <- result{}
				continue
			}
			g.Go(func() error {
				buf := bufs.Get().(*[]byte)
				data, err := c.fetchChunk(ctx, i, ch, *buf)
				*buf = data
				fut <- result{buf, err}
				return nil
			})
		}
		return nil
	})
	err := func() error {
		i := 0
		for fut := range futures {
			if err := ctx.Err(); err != nil {
				return err
			}
			r := <-fut
			if r.err != nil {
				return r.err
			}
			var data []byte
			if r.buf != nil {
				data = *r.buf
			}
			if err := fn(m.Chunks[i], data); err != nil {
				return err
			}
			if r.buf != nil {
				bufs.Put(r.buf)
			}
			i++
		}
		return ctx.Err()
	}()
	cancel()
	for range futures { // let the producer see the cancel and stop
	}
	g.Wait()
	return err
}

// Pull writes the blob to w in order, zero chunks as zeros.
func (c *Catalog) Pull(ctx context.Context, m *Manifest, w io.Writer, progress func(int64)) error {
	return c.Stream(ctx, m, func(ch Chunk, data []byte) error {
		var err error
		if data != nil {
			_, err = w.Write(data)
		} else {
			err = writeZeros(w, ch.Length)
		}
		if err == nil && progress != nil {
			progress(ch.Length)
		}
		return err
	})
}

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroBlock)))
		if _, err := w.Write(zeroBlock[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// PullFile writes the blob to a new file at path, leaving zero chunks as
// holes. The file appears at path only once complete and synced.
func (c *Catalog) PullFile(ctx context.Context, m *Manifest, path string, progress func(int64)) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".pull-")
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	err = c.Stream(ctx, m, func(ch Chunk, data []byte) error {
		if data != nil {
			if _, err := tmp.WriteAt(data, ch.Offset); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(ch.Length)
		}
		return nil
	})
	if err == nil {
		err = tmp.Truncate(m.Size)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("pull to %s: %w", path, err)
	}
	return nil
}
