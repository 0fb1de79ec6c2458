package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// nodeMatches reports whether n has the selector's pool, labels and node id.
// Submit checks and placement both use it, so what is accepted is what can
// be placed.
func nodeMatches(s *Selector, n *Node) bool {
	if s.Pool != "" && s.Pool != n.Pool {
		return false
	}
	if len(s.NodeIDs) > 0 && !slices.Contains(s.NodeIDs, n.ID) {
		return false
	}
	for k, v := range s.Labels {
		if got, ok := n.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Matches reports whether s takes drive d of node n, leaving aside what
// placement adds (the image size, refused and busy drives): what a client
// previews before it gives a standing order.
func (s *Selector) Matches(n *Node, d *Drive) bool {
	return nodeMatches(s, n) && driveMatches(s, s.MinSize, d)
}

// driveMatches reports whether d has the selector's removable flag and at
// least minSize bytes.
func driveMatches(s *Selector, minSize uint64, d *Drive) bool {
	return d.Size >= minSize && (s.Removable == nil || *s.Removable == d.Removable)
}

// selectorKey is the same for two jobs exactly when their selectors and
// image sizes accept the same drives, so that a scan made for one holds
// for the other. Every string is quoted, so no two selectors share a key.
func selectorKey(j *Job) string {
	return fleetKey(j.Selector) + "|" + strconv.FormatUint(max(j.Selector.MinSize, j.ImageSize), 10)
}

// fleetKey is selectorKey leaving sizes aside: the same for two selectors
// exactly when they accept the same nodes and kind of drive.
func fleetKey(s *Selector) string {
	var b strings.Builder
	b.WriteString(strconv.Quote(s.Pool))
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		b.WriteString(strconv.Quote(k))
		b.WriteString(strconv.Quote(s.Labels[k]))
	}
	b.WriteByte('|')
	ids := slices.Clone(s.NodeIDs)
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		b.WriteString(strconv.Quote(id))
	}
	b.WriteByte('|')
	if s.Removable != nil {
		b.WriteString(strconv.FormatBool(*s.Removable))
	}
	return b.String()
}

// describe renders a selector's node part for messages.
func describe(s *Selector) string {
	var parts []string
	if s.Pool != "" {
		parts = append(parts, "pool "+strconv.Quote(s.Pool))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		parts = append(parts, fmt.Sprintf("label %s=%s", k, s.Labels[k]))
	}
	if len(s.NodeIDs) > 0 {
		parts = append(parts, "nodes "+some(s.NodeIDs))
	}
	if len(parts) == 0 {
		return "any node"
	}
	return strings.Join(parts, ", ")
}

// some lists names sorted, at most eight of them, for an error message that
// should help without drowning the reader in a large farm.
func some(names []string) string {
	const max = 8
	if len(names) == 0 {
		return "none"
	}
	sorted := slices.Sorted(slices.Values(names))
	if len(sorted) <= max {
		return strings.Join(sorted, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(sorted[:max], ", "), len(sorted)-max)
}

// size renders bytes for a person, with the exact figure when it is
// larger than a KiB, since drive and image sizes are compared to the byte.
func size(n uint64) string {
	h := humanize.IBytes(n)
	if strings.HasSuffix(h, " B") {
		return h
	}
	return fmt.Sprintf("%s (%d bytes)", h, n)
}

// byAge orders jobs oldest first; the id breaks ties so the order never
// depends on how the caller listed them.
func byAge(jobs []Job) []*Job {
	out := make([]*Job, len(jobs))
	for i := range jobs {
		out[i] = &jobs[i]
	}
	slices.SortFunc(out, func(a, b *Job) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out
}
