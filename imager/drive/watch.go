package drive

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// EventKind says what happened to a drive.
type EventKind string

// The events Watch reports.
const (
	Inserted EventKind = "inserted"
	Removed  EventKind = "removed"
)

// Event is one drive inserted or removed.
type Event struct {
	Kind  EventKind `json:"kind"`
	Drive Drive     `json:"drive"`
}

// DefaultWatchInterval is how often Watch looks when given no interval:
// often enough that an insertion or removal is seen within 2 seconds.
const DefaultWatchInterval = time.Second

// Watch reports drives as they come and go, until ctx is cancelled, and
// then returns nil. It polls Discover, which needs no udev and no netlink
// socket (containers often have neither). The drives present at the start
// are reported as inserted first, so a caller has one code path for
// "a drive is there". A drive swapped for another at the same path
// between two looks is reported removed, then inserted. fn is called from
// Watch's goroutine.
func Watch(ctx context.Context, cfg Config, interval time.Duration, fn func(Event)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	known := map[string]Drive{}
	for {
		drives, err := Discover(cfg)
		if err != nil {
			return fmt.Errorf("watch drives: %w", err)
		}
		for _, ev := range diff(known, drives) {
			fn(ev)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// diff updates known to drives and returns what changed: removals first,
// each group in the order Discover sorts.
func diff(known map[string]Drive, drives []Drive) []Event {
	now := make(map[string]bool, len(drives))
	var inserted []Event
	for _, d := range drives {
		k := watchKey(d)
		now[k] = true
		if _, ok := known[k]; !ok {
			known[k] = d
			inserted = append(inserted, Event{Kind: Inserted, Drive: d})
		}
	}
	var events []Event
	for k, d := range known {
		if !now[k] {
			delete(known, k)
			events = append(events, Event{Kind: Removed, Drive: d})
		}
	}
	slices.SortFunc(events, func(a, b Event) int { return cmp.Compare(a.Drive.Path, b.Drive.Path) })
	return append(events, inserted...)
}

// watchKey tells one drive from another: a new id at the same path is a
// new drive, and so is a new device number (unplugged and plugged again)
// or a new serial (a virtual drive's file replaced under its name, which
// keeps its id).
func watchKey(d Drive) string {
	return d.ID + "\x00" + d.Path + "\x00" + d.DevNum + "\x00" + d.Serial
}
