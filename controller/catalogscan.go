package controller

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// catalogWatcher records catalog changes nobody reported (see Run).
type catalogWatcher struct {
	cat      *catalog.Catalog
	refs     *catalogrefs.Store
	audit    auditor
	interval time.Duration // between scans
	log      *slog.Logger
}

// DefaultCatalogScanInterval is how often the catalog watcher compares the
// catalog with the refs the audit trail knows, unless configured.
const DefaultCatalogScanInterval = time.Minute

// refChange is a ref whose catalog digest is not the one the trail knows:
// known is the trail's (a zero Revision: it knows no such ref), now the
// catalog's ("" when the catalog has no such ref).
type refChange struct {
	known catalogrefs.Known
	now   string
}

// Run is the catalog watcher. Refs change through the
// controller (imagerefs.go), which records each change and keeps the refs
// the trail knows (catalogrefs) in step; a change made in the store
// directly (no controller, keys that can write refs) or whose record
// could not be appended would otherwise leave no record.
//
// Every interval (measured from the end of one scan to the start of the
// next) the watcher lists the catalog's refs and compares them with the
// known ones. A ref that differs is recorded as image.unrecorded only when
// the next scan finds it still differing in the same way: a change
// recorded within one interval of being made is never flagged, and an
// unrecorded one is recorded within two intervals. Recording moves the
// known ref, only if no recorded change moved it meanwhile, so it is
// recorded once.
//
// The first scan of a bucket never seeded (a new farm, or one upgraded to
// this) takes the catalog as known without recording anything. A scan
// that cannot read the catalog or the bucket is logged and retried at the
// next one; the watcher never stops the controller.
func (w *catalogWatcher) Run(ctx context.Context) error {
	var pending map[string]refChange // what the last scan found differing
	for pause := time.Duration(0); ; pause = w.interval {
		if !wait.Sleep(ctx, pause) {
			return nil
		}
		changes, err := w.scanCatalog(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("catalog scan: retrying at the next one", "error", err)
			}
			continue // keep pending: the next scan can confirm it
		}
		next := map[string]refChange{}
		for _, ref := range slices.Sorted(maps.Keys(changes)) {
			if ch := changes[ref]; pending[ref] != ch || !w.recordUnreported(ctx, ref, ch) {
				next[ref] = ch
			}
		}
		pending = next
	}
}

// scanCatalog returns the refs whose catalog digest differs from the known
// one, or seeds the known refs from the catalog if they never were.
func (w *catalogWatcher) scanCatalog(ctx context.Context) (map[string]refChange, error) {
	images, err := w.cat.Refs(ctx, "") // refs only: a bad manifest does not blind the watcher
	if err != nil {
		return nil, fmt.Errorf("list catalog: %w", err)
	}
	now := map[string]string{}
	for _, img := range images {
		for _, tag := range append(slices.Clip(img.Channels), img.Version) {
			if tag != "" {
				now[img.Name+":"+tag] = img.Digest
			}
		}
	}
	known, seeded, err := w.refs.All(ctx)
	if err != nil {
		return nil, err
	}
	if !seeded {
		if err := w.refs.Seed(ctx, now); err != nil {
			return nil, err
		}
		w.log.Info("catalog refs seeded: changes from now on are checked against them", "refs", len(now))
		return nil, nil
	}
	changes := map[string]refChange{}
	for ref, d := range now {
		if known[ref].Digest != d {
			changes[ref] = refChange{known: known[ref], now: d}
		}
	}
	for ref, k := range known {
		if _, ok := now[ref]; !ok {
			changes[ref] = refChange{known: k}
		}
	}
	return changes, nil
}

// recordUnreported records ref's unreported change ch and moves the known
// ref to it. It reports whether the change is settled: recorded, or
// reported meanwhile.
func (w *catalogWatcher) recordUnreported(ctx context.Context, ref string, ch refChange) bool {
	rec := &imagefarmv1.AuditRecord{Actor: controllerActor, Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_UNRECORDED,
		ImageRef: ref, ImageDigest: ch.now}
	switch {
	case ch.now == "":
		rec.ImageDigest, rec.Message = ch.known.Digest, ref+" was removed without a recorded change"
	case ch.known.Revision == 0:
		rec.Message = ref + " appeared without a recorded change"
	default:
		rec.Message = fmt.Sprintf("%s moved from %s to %s without a recorded change", ref, ch.known.Digest, ch.now)
	}
	w.log.Warn("catalog changed without a recorded change", "image_ref", ref, "message", rec.Message)
	if w.audit.Record(ctx, rec) == nil {
		return false // logged by record; the next scan tries again
	}
	if err := w.refs.Move(ctx, ref, ch.known, ch.now); err != nil {
		// A report moved it after this scan read it; the next scan
		// compares with what the report said.
		w.log.Info("catalog ref changed while recorded", "image_ref", ref, "error", err)
	}
	return true
}
