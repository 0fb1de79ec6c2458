package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/storage"
)

// DefaultGrace is how old an unreferenced object must be before GC deletes
// it: a push in flight stores chunks and its manifest before any ref points
// at them, and touches chunks it reuses, so it is safe for this long.
const DefaultGrace = time.Hour

// GCResult says what GC deleted (or, on a dry run, would delete).
type GCResult struct {
	Manifests   int    `json:"manifests"`
	Chunks      int    `json:"chunks"`
	Signatures  int    `json:"signatures"` // of manifests deleted (or gone)
	Bytes       int64  `json:"bytes"`
	KeptYoung   int    `json:"kept_young"` // unreferenced, but inside the grace period
	LiveChunks  int    `json:"live_chunks"`
	LiveBytes   int64  `json:"live_bytes"`
	DryRun      bool   `json:"dry_run"`
	GracePeriod string `json:"grace_period"`
}

// GC deletes manifests no ref points at and chunks no remaining manifest
// uses, when they are older than grace.
func (c *Catalog) GC(ctx context.Context, grace time.Duration, dryRun bool) (*GCResult, error) {
	res := &GCResult{DryRun: dryRun, GracePeriod: grace.String()}
	cutoff := time.Now().Add(-grace)
	referenced := map[string]bool{}
	err := c.store.List(ctx, "refs/", func(oi storage.ObjectInfo) error {
		d, err := c.readRef(ctx, oi.Key)
		if err == nil {
			referenced[d] = true
		}
		return ignoreNotFound(err)
	})
	if err != nil {
		return nil, fmt.Errorf("gc: list refs: %w", err)
	}
	live := map[string]bool{}
	kept := map[string]bool{} // digests of the manifests GC keeps
	err = c.store.List(ctx, "manifests/sha256/", func(oi storage.ObjectInfo) error {
		digest := "sha256:" + strings.TrimPrefix(oi.Key, "manifests/sha256/")
		if !referenced[digest] {
			if oi.ModTime.Before(cutoff) {
				res.Manifests++
				return c.deleteIfOld(ctx, oi.Key, cutoff, dryRun)
			}
			res.KeptYoung++ // perhaps a push about to move its ref: keep its chunks too
		}
		kept[digest] = true
		m, err := c.ManifestByDigest(ctx, digest)
		if err != nil {
			return err // never delete chunks when a live manifest cannot be read
		}
		for _, ch := range m.Chunks {
			live[ch.ID] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc: manifests: %w", err)
	}
	if err := c.gcSignatures(ctx, kept, cutoff, res); err != nil {
		return nil, err
	}
	err = c.store.List(ctx, "chunks/", func(oi storage.ObjectInfo) error {
		id := oi.Key[strings.LastIndex(oi.Key, "/")+1:]
		switch {
		case live[id]:
			res.LiveChunks++
			res.LiveBytes += oi.Size
			return nil
		case !oi.ModTime.Before(cutoff):
			res.KeptYoung++
			return nil
		}
		res.Chunks++
		res.Bytes += oi.Size
		return c.deleteIfOld(ctx, oi.Key, cutoff, dryRun)
	})
	if err != nil {
		return nil, fmt.Errorf("gc: chunks: %w", err)
	}
	return res, nil
}

// gcSignatures deletes the signatures of manifests that are not kept.
func (c *Catalog) gcSignatures(ctx context.Context, kept map[string]bool, cutoff time.Time, res *GCResult) error {
	err := c.store.List(ctx, "signatures/sha256/", func(oi storage.ObjectInfo) error {
		hex, _, _ := strings.Cut(strings.TrimPrefix(oi.Key, "signatures/sha256/"), "/")
		if kept["sha256:"+hex] || !oi.ModTime.Before(cutoff) {
			return nil
		}
		res.Signatures++
		return c.deleteIfOld(ctx, oi.Key, cutoff, res.DryRun)
	})
	if err != nil {
		return fmt.Errorf("gc: signatures: %w", err)
	}
	return nil
}

// deleteIfOld deletes key if it is still older than cutoff when looked at
// again: a push may have touched it since the listing.
func (c *Catalog) deleteIfOld(ctx context.Context, key string, cutoff time.Time, dryRun bool) error {
	if dryRun {
		return nil
	}
	oi, err := c.store.Stat(ctx, key)
	if err != nil || !oi.ModTime.Before(cutoff) {
		return ignoreNotFound(err)
	}
	return c.store.Delete(ctx, key)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}
