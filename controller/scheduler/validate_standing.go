package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/imagefarm/imagefarm/internal/ident"
)

func validateStanding(j Job, x index) error {
	if j.Count < 1 || j.Count > MaxCount {
		return fmt.Errorf("count %d: a standing order writes 1 to %d drives: %w", j.Count, MaxCount, ErrBadCount)
	}
	s := j.Selector
	if err := ValidateSelector(s); err != nil {
		return err
	}
	nodes, err := selectedNodes(s, x)
	if err != nil {
		return err
	}
	return checkSizes(j, nodes)
}

// ValidateSelector refuses a selector with a malformed part: a pool,
// labels or node ids that break their internal/ident rules, or a minimum
// size above MaxMinSize. Errors wrap ErrBadSelector.
func ValidateSelector(s *Selector) error {
	if err := cmp.Or(ident.Pool(s.Pool), ident.Labels(s.Labels)); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSelector, err)
	}
	if len(s.NodeIDs) > MaxCount {
		return fmt.Errorf("selector: %d node ids, the limit is %d: %w", len(s.NodeIDs), MaxCount, ErrBadSelector)
	}
	for _, id := range s.NodeIDs {
		if err := ident.NodeID(id); err != nil {
			return fmt.Errorf("%w: %w", ErrBadSelector, err)
		}
	}
	if s.MinSize > MaxMinSize {
		return fmt.Errorf("selector: a minimum size of %s is larger than any drive, the limit is %s: %w",
			size(s.MinSize), size(MaxMinSize), ErrBadSelector)
	}
	return nil
}

// selectedNodes are the known nodes the selector matches, lost ones
// included: they may come back. An unknown node id or pool is refused
// first, since its name is the likeliest typo.
func selectedNodes(s *Selector, x index) ([]*Node, error) {
	for _, id := range s.NodeIDs {
		if _, ok := x.nodes[id]; !ok {
			return nil, fmt.Errorf("selector: the farm has no node %q (nodes: %s): %w", id, some(x.ids), ErrUnknownNode)
		}
	}
	if s.Pool != "" && !x.pools[s.Pool] {
		pools := slices.Collect(maps.Keys(x.pools))
		return nil, fmt.Errorf("selector: no node is in pool %q (pools: %s): %w", s.Pool, some(pools), ErrUnknownPool)
	}
	var out []*Node
	for _, id := range x.ids {
		if n := x.nodes[id]; nodeMatches(s, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("selector: no node has %s (imagefarm nodes --json shows each node's pool and labels): %w", describe(s), ErrNoMatchingNode)
	}
	return out, nil
}

// checkSizes refuses an order that would wait for ever: its selector lets
// through drives smaller than the image, drives match it today, and all of
// them are too small. Refused drives do not count: they are never written.
func checkSizes(j Job, nodes []*Node) error {
	s := j.Selector
	if s.MinSize >= j.ImageSize {
		return nil
	}
	matched, largest := 0, uint64(0)
	for _, n := range nodes {
		for i := range n.Drives {
			d := &n.Drives[i]
			if d.Refused == "" && driveMatches(s, s.MinSize, d) {
				matched++
				largest = max(largest, d.Size)
			}
		}
	}
	if matched == 0 || largest >= j.ImageSize {
		return nil
	}
	matches := fmt.Sprintf("the %d drives it matches hold at most", matched)
	if matched == 1 {
		matches = "the one drive it matches holds"
	}
	return fmt.Errorf("selector: the image needs %s but %s %s; "+
		"insert larger drives and set a minimum size of at least %d bytes to wait for them: %w",
		size(j.ImageSize), matches, size(largest), j.ImageSize, ErrDriveTooSmall)
}
