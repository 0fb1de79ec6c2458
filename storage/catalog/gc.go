package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/internal/wait"
	"github.com/imagefarm/imagefarm/storage"
)

// DefaultGrace is how old an unreferenced object must be before GC deletes
// it, when no push is running.
const DefaultGrace = time.Hour

// How a push and a gc keep out of each other's way, however long either
// runs. Each writes a marker object when it starts (uploads/<random> for a
// push, gc/<random> for a gc), holding its start time, touches it every
// markerRefresh while it runs and deletes it when it ends; a marker not
// touched for markerTTL is stale, left by a process that crashed or
// stalled, and GC deletes it.
//
//   - GC writes its marker and then lists the live upload markers: it never
//     deletes an object modified after the earliest live push started
//     (less clockSlack, for clocks that disagree), whatever its grace.
//     Every chunk a push relies on is uploaded or touched after the push
//     started, and its manifest is written after that.
//   - That leaves the gcs running when the push uploaded or touched a chunk:
//     they may have missed its marker, or looked at a reused chunk just
//     before the push touched it. So just before it writes its manifest the
//     push waits until every gc running then has ended, and checks that
//     every chunk it relies on is still there; if one is gone it fails with
//     ErrChunkGone and no ref moves. A gc that starts after that sees the
//     marker and the touched chunks, and keeps them.
//   - A process stalled for longer than markerTTL/2 may have had its marker
//     written off by others: a gc then deletes nothing more, and a push
//     moves no ref. Each delete, and the push's ref, must be done by then.
//
// So safety does not depend on the grace period; it assumes only that the
// clocks of the store and the hosts agree within clockSlack. A push may
// wait at its end for as long as a gc runs.
const (
	markerTTL     = 10 * time.Minute
	markerRefresh = markerTTL / 10
	clockSlack    = time.Minute
	uploadsPrefix = "uploads/"
	gcPrefix      = "gc/"
	markerPoll    = 250 * time.Millisecond // how often a push looks whether the gcs it waits for ended
)

// GCResult says what GC deleted (or, on a dry run, would delete).
type GCResult struct {
	Manifests    int    `json:"manifests"`
	Chunks       int    `json:"chunks"`
	Signatures   int    `json:"signatures"` // of manifests deleted (or gone)
	Bytes        int64  `json:"bytes"`
	KeptYoung    int    `json:"kept_young"` // unreferenced, but inside the grace period or newer than a running push
	LiveChunks   int    `json:"live_chunks"`
	LiveBytes    int64  `json:"live_bytes"`
	Pushes       int    `json:"pushes"`        // pushes running, whose objects were kept
	StaleMarkers int    `json:"stale_markers"` // markers of crashed pushes and gcs, deleted
	DryRun       bool   `json:"dry_run"`
	GracePeriod  string `json:"grace_period"`
}

// GC deletes manifests no ref points at and chunks no remaining manifest
// uses, when they are older than grace and than every running push (see
// markerTTL). A dry run deletes nothing and writes no marker.
func (c *Catalog) GC(ctx context.Context, grace time.Duration, dryRun bool) (*GCResult, error) {
	g := &gcRun{c: c, res: &GCResult{DryRun: dryRun, GracePeriod: grace.String()}}
	var err error
	if dryRun {
		err = g.run(ctx, grace)
	} else {
		err = c.whileMarked(ctx, gcPrefix, func(ctx context.Context, mk *marker) error {
			g.mk = mk
			return g.run(ctx, grace)
		})
	}
	if err != nil {
		return nil, err
	}
	return g.res, nil
}

// gcRun is one GC.
type gcRun struct {
	c      *Catalog
	res    *GCResult
	mk     *marker // nil on a dry run
	cutoff time.Time
}

func (g *gcRun) run(ctx context.Context, grace time.Duration) error {
	g.cutoff = time.Now().Add(-grace)
	pushes, err := g.c.liveMarkers(ctx, uploadsPrefix, g.deleteStale)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	g.res.Pushes = len(pushes)
	for _, start := range pushes {
		g.cutoff = minTime(g.cutoff, start.Add(-clockSlack))
	}
	if _, err := g.c.liveMarkers(ctx, gcPrefix, g.deleteStale); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	live, kept, err := g.manifests(ctx)
	if err != nil {
		return err
	}
	if err := g.signatures(ctx, kept); err != nil {
		return err
	}
	return g.chunks(ctx, live)
}

// manifests deletes the manifests no ref points at and returns the chunks
// and the digests of the manifests kept.
func (g *gcRun) manifests(ctx context.Context) (live, kept map[string]bool, err error) {
	referenced := map[string]bool{}
	err = g.c.store.List(ctx, "refs/", func(oi storage.ObjectInfo) error {
		if _, _, _, ok := parseRefKey(oi.Key); !ok {
			return nil // a claim
		}
		d, err := g.c.readRef(ctx, oi.Key)
		if err == nil {
			referenced[d] = true
		}
		return ignoreNotFound(err)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gc: list refs: %w", err)
	}
	live, kept = map[string]bool{}, map[string]bool{}
	err = g.c.store.List(ctx, "manifests/sha256/", func(oi storage.ObjectInfo) error {
		digest := "sha256:" + strings.TrimPrefix(oi.Key, "manifests/sha256/")
		if !referenced[digest] {
			if oi.ModTime.Before(g.cutoff) {
				g.res.Manifests++
				return g.deleteIfOld(ctx, oi.Key)
			}
			g.res.KeptYoung++ // perhaps a push about to move its ref: keep its chunks too
		}
		kept[digest] = true
		m, err := g.c.ManifestByDigest(ctx, digest)
		if err != nil {
			return err // never delete chunks when a live manifest cannot be read
		}
		for _, ch := range m.Chunks {
			live[ch.ID] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gc: manifests: %w", err)
	}
	return live, kept, nil
}

// signatures deletes the signatures of manifests that are not kept.
func (g *gcRun) signatures(ctx context.Context, kept map[string]bool) error {
	err := g.c.store.List(ctx, "signatures/sha256/", func(oi storage.ObjectInfo) error {
		hex, _, _ := strings.Cut(strings.TrimPrefix(oi.Key, "signatures/sha256/"), "/")
		if kept["sha256:"+hex] || !oi.ModTime.Before(g.cutoff) {
			return nil
		}
		g.res.Signatures++
		return g.deleteIfOld(ctx, oi.Key)
	})
	if err != nil {
		return fmt.Errorf("gc: signatures: %w", err)
	}
	return nil
}

// chunks deletes the chunks not in live.
func (g *gcRun) chunks(ctx context.Context, live map[string]bool) error {
	err := g.c.store.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		id := oi.Key[strings.LastIndex(oi.Key, "/")+1:]
		switch {
		case live[id]:
			g.res.LiveChunks++
			g.res.LiveBytes += oi.Size
			return nil
		case !oi.ModTime.Before(g.cutoff):
			g.res.KeptYoung++
			return nil
		}
		g.res.Chunks++
		g.res.Bytes += oi.Size
		return g.deleteIfOld(ctx, oi.Key)
	})
	if err != nil {
		return fmt.Errorf("gc: chunks: %w", err)
	}
	return nil
}

// deleteIfOld deletes key if it is still older than the cutoff when looked
// at again: a push may have touched it since the listing.
func (g *gcRun) deleteIfOld(ctx context.Context, key string) error {
	if g.mk == nil {
		return nil
	}
	oi, err := g.c.store.Stat(ctx, key)
	if err != nil || !oi.ModTime.Before(g.cutoff) {
		return ignoreNotFound(err)
	}
	ctx, cancel := g.mk.bound(ctx)
	defer cancel()
	if err := g.mk.fresh(); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return g.c.store.Delete(ctx, key)
}

// deleteStale deletes a stale marker, unless this is a dry run.
func (g *gcRun) deleteStale(ctx context.Context, key string) error {
	g.res.StaleMarkers++
	if g.mk == nil {
		return nil
	}
	// A stale marker may be touched again by a process that comes back;
	// deleting it then is safe, as that process fails when it next
	// touches its marker.
	return g.c.store.Delete(ctx, key)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// marker is the object that says a push or a gc is running (see markerTTL).
type marker struct {
	c       *Catalog
	key     string
	start   time.Time
	touched atomic.Int64 // UnixNano of the last time the marker was written or touched
}

// whileMarked writes a marker under prefix, runs fn while keeping the
// marker fresh, and deletes the marker when fn returns. fn's context is
// cancelled if the marker is lost.
func (c *Catalog) whileMarked(ctx context.Context, prefix string, fn func(context.Context, *marker) error) error {
	var b [16]byte
	rand.Read(b[:])
	mk := &marker{c: c, key: prefix + hex.EncodeToString(b[:]), start: time.Now().UTC()}
	content := mk.start.Format(time.RFC3339Nano)
	if err := c.store.Create(ctx, mk.key, strings.NewReader(content), int64(len(content))); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	mk.touched.Store(time.Now().UnixNano())
	defer c.store.Delete(context.WithoutCancel(ctx), mk.key) // a marker left behind goes stale
	done := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mk.keepAlive(gctx, done) })
	g.Go(func() error {
		defer close(done)
		return fn(gctx, mk)
	})
	return g.Wait()
}

// keepAlive touches the marker every markerRefresh until done is closed.
// A failed touch is tried again at the next tick; fresh tells whether the
// marker is still to be trusted. A marker deleted by a gc is lost for good.
func (mk *marker) keepAlive(ctx context.Context, done <-chan struct{}) error {
	t := time.NewTicker(markerRefresh)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return nil // fn sees the same context
		case <-t.C:
		}
		if err := mk.touch(ctx); errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
}

func (mk *marker) touch(ctx context.Context) error {
	if err := mk.c.store.Touch(ctx, mk.key); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("marker %s was deleted as stale: this process stalled for over %v: %w", mk.key, markerTTL, err)
		}
		return err
	}
	mk.touched.Store(time.Now().UnixNano())
	return nil
}

// fresh returns an error if others may by now take the marker for stale.
func (mk *marker) fresh() error {
	if age := time.Since(time.Unix(0, mk.touched.Load())); age > markerTTL/2 {
		return fmt.Errorf("marker %s not touched for %v; run again", mk.key, age.Round(time.Second))
	}
	return nil
}

// bound returns ctx ending when others may take the marker for stale.
func (mk *marker) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, time.Unix(0, mk.touched.Load()).Add(markerTTL/2))
}

// waitEnded waits until the marker at key is deleted or stale.
func (c *Catalog) waitEnded(ctx context.Context, key string) error {
	for {
		oi, err := c.store.Stat(ctx, key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil
		case err != nil:
			return err
		case time.Since(oi.ModTime) > markerTTL:
			return nil
		}
		if !wait.Sleep(ctx, markerPoll) {
			return ctx.Err()
		}
	}
}

// liveMarkers returns the start times of the live markers under prefix,
// by key, and calls stale for each stale one.
func (c *Catalog) liveMarkers(ctx context.Context, prefix string, stale func(context.Context, string) error) (map[string]time.Time, error) {
	live := map[string]time.Time{}
	staleBefore := time.Now().Add(-markerTTL)
	err := c.store.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if oi.ModTime.Before(staleBefore) {
			return stale(ctx, oi.Key)
		}
		data, err := c.readSmall(ctx, oi.Key, 256)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // ended meanwhile
		} else if err != nil {
			return err
		}
		// A start that cannot be read keeps everything until the marker is stale.
		start, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
		live[oi.Key] = start
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list markers %s: %w", prefix, err)
	}
	return live, nil
}
