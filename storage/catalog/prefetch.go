package catalog

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Prefetch brings every chunk of m into the node cache, each verified on
// arrival, before a byte of it is handed to anyone: a chunk the store
// serves tampered or cut short is found before a drive is written. Chunks
// the cache holds already are not read again here (every later read of
// them is checked anyway). It returns false, having fetched nothing, when
// the catalog has no cache or the image's chunks would not fit in it, so
// that streaming is the only way. progress, if set, gets how many of the
// image's bytes are in hand; it is called from several goroutines.
func (c *Catalog) Prefetch(ctx context.Context, m *Manifest, progress func(done int64)) (bool, error) {
	if c.cache == nil || m.StoredBytes() > c.cache.max {
		return false, nil
	}
	var mu sync.Mutex // so that progress never goes back
	var done int64
	report := func(n int64) {
		mu.Lock()
		defer mu.Unlock()
		if done += n; progress != nil {
			progress(done)
		}
	}
	pool := newBufferPool(m.ChunkSize)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.window(m.ChunkSize))
	for i, ch := range m.Chunks {
		if ch.Zero || c.cache.has(ch.ID) {
			report(ch.Length)
			continue
		}
		g.Go(func() error {
			b := pool.get()
			defer b.Release()
			if _, err := c.fetchChunk(ctx, i, ch, b.Data); err != nil {
				return err
			}
			report(ch.Length)
			return nil
		})
	}
	return true, g.Wait()
}
