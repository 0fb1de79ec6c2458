package scheduler

import (
	"cmp"
	"slices"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Place returns the tasks to create now, given the jobs that are not final
// and the farm. It serves jobs oldest first: an explicit job gets each of
// its drives that has no task of the job yet and is free, on an ONLINE node,
// not refused and large enough; a standing order takes matching fresh free
// drives until its count is covered by tasks done or under way. What cannot
// be placed now is placed by a later call, when drives are inserted or
// freed. Place never puts two tasks on one drive, counting the tasks already
// under way in jobs as well as the drives' TaskID. It does not modify its
// arguments.
func Place(jobs []Job, f Farm) []Placement {
	p := newPlan(f, jobs)
	for _, j := range byAge(jobs) {
		if p.free == 0 {
			break
		}
		switch {
		case len(j.Drives) > 0:
			p.explicit(j)
		case j.Selector != nil:
			p.standing(j)
		}
	}
	return p.out
}

// cand is a drive that can take a task at the start of this Place call.
type cand struct {
	node  int // index into plan.nodes
	drive *Drive
	taken bool
}

// span is an ONLINE node and where its candidate drives are in plan.cands.
type span struct {
	node   *Node
	lo, hi int
	bounds
}

// bounds count and bound, per kind (fixed, removable), the candidates not
// taken yet that a standing order may take, so that an order skips a node,
// or the whole farm, that has nothing for it without looking at each drive.
// Place keeps them exact as drives are taken.
type bounds struct {
	fresh   [2]int
	largest [2]uint64
}

// kind indexes bounds' arrays.
func kind(removable bool) int {
	if removable {
		return 1
	}
	return 0
}

// orderable reports whether a standing order may take c's drive: nothing
// finished on it since it was inserted, and it is still free in this call.
func (c *cand) orderable() bool { return !c.taken && c.drive.LastTaskID == "" }

// bound recomputes n's bounds from its candidates.
func (p *plan) bound(n *span) {
	n.bounds = bounds{}
	for i := n.lo; i < n.hi; i++ {
		if c := &p.cands[i]; c.orderable() {
			k := kind(c.drive.Removable)
			n.fresh[k]++
			n.largest[k] = max(n.largest[k], c.drive.Size)
		}
	}
}

// unbound takes d, a candidate of n just taken, out of the bounds.
func (p *plan) unbound(n *span, d *Drive) {
	if d.LastTaskID != "" {
		return // never counted
	}
	k := kind(d.Removable)
	p.all.fresh[k]--
	n.fresh[k]--
	if n.largest[k] != d.Size {
		return
	}
	p.bound(n) // d may have been the node's largest, and the farm's
	if p.all.largest[k] == d.Size {
		p.all.largest[k] = 0
		for i := range p.nodes {
			p.all.largest[k] = max(p.all.largest[k], p.nodes[i].largest[k])
		}
	}
}

// plan is one Place call's working state. cands are sorted by node id, slot
// and drive id, which is the order drives are given out in; nodes keep each
// node's candidates contiguous so a node that does not match is skipped whole.
type plan struct {
	cands []cand
	nodes []span
	refs  map[DriveRef]int // cand index by drive; built for the first explicit job
	free  int              // candidates not taken yet
	all   bounds           // over all nodes
	// cursor remembers, per selectorKey, the candidate before which no
	// drive is left for that selector, so a thousand equal standing orders
	// do not each rescan the drives the earlier ones took.
	cursor map[string]int
	out    []Placement
}

func newPlan(f Farm, jobs []Job) *plan {
	busy := busyDrives(jobs)
	nodes := onlineNodes(f)
	p := &plan{nodes: make([]span, 0, len(nodes)), cursor: map[string]int{}}
	for _, n := range nodes {
		lo := len(p.cands)
		for _, d := range placeable(n, busy) {
			p.cands = append(p.cands, cand{node: len(p.nodes), drive: d})
		}
		if len(p.cands) > lo {
			p.nodes = append(p.nodes, span{node: n, lo: lo, hi: len(p.cands)})
			s := &p.nodes[len(p.nodes)-1]
			p.bound(s)
			for k := range s.fresh {
				p.all.fresh[k] += s.fresh[k]
				p.all.largest[k] = max(p.all.largest[k], s.largest[k])
			}
		}
	}
	p.free = len(p.cands)
	return p
}

// busyDrives are the drives that jobs' tasks under way hold. The controller
// also marks them in Drive.TaskID; reading them here as well keeps Place
// from double-booking even when a node report has not caught up.
func busyDrives(jobs []Job) map[DriveRef]bool {
	busy := map[DriveRef]bool{}
	for i := range jobs {
		for _, t := range jobs[i].Tasks {
			if active(t.State) {
				busy[t.ref()] = true
			}
		}
	}
	return busy
}

// onlineNodes are the nodes taking tasks, by id. A node id listed twice is
// left out altogether, whatever the states: which entry is real cannot be
// told.
func onlineNodes(f Farm) []*Node {
	out := make([]*Node, len(f.Nodes))
	for i := range f.Nodes {
		out[i] = &f.Nodes[i]
	}
	slices.SortFunc(out, func(a, b *Node) int { return cmp.Compare(a.ID, b.ID) })
	out = dropRepeated(out, func(n *Node) string { return n.ID })
	return slices.DeleteFunc(out, func(n *Node) bool { return n.State != imagefarmv1.NodeState_NODE_STATE_ONLINE })
}

// placeable are n's drives that can take a task now, by slot then id: not
// refused, not busy, and named by an id no other drive of n has.
func placeable(n *Node, busy map[DriveRef]bool) []*Drive {
	out := make([]*Drive, 0, len(n.Drives))
	for i := range n.Drives {
		out = append(out, &n.Drives[i])
	}
	slices.SortFunc(out, func(a, b *Drive) int { return cmp.Compare(a.ID, b.ID) })
	out = dropRepeated(out, func(d *Drive) string { return d.ID })
	out = slices.DeleteFunc(out, func(d *Drive) bool {
		return d.Refused != "" || d.TaskID != "" || busy[DriveRef{n.ID, d.ID}]
	})
	slices.SortFunc(out, func(a, b *Drive) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// dropRepeated removes every element whose key another element shares; s
// must be sorted by key.
func dropRepeated[T any](s []T, key func(T) string) []T {
	out := s[:0]
	for i := 0; i < len(s); {
		j := i + 1
		for j < len(s) && key(s[j]) == key(s[i]) {
			j++
		}
		if j == i+1 {
			out = append(out, s[i])
		}
		i = j
	}
	return out
}

// explicit places each of j's drives that j has no task on yet. A drive
// that is not a candidate now waits for a later call.
func (p *plan) explicit(j *Job) {
	if p.refs == nil {
		p.refs = make(map[DriveRef]int, len(p.cands))
		for i, c := range p.cands {
			p.refs[DriveRef{p.nodes[c.node].node.ID, c.drive.ID}] = i
		}
	}
	had := make(map[DriveRef]bool, len(j.Tasks))
	for _, t := range j.Tasks {
		had[t.ref()] = true
	}
	for _, ref := range j.Drives {
		i, ok := p.refs[ref]
		if ok && !had[ref] && !p.cands[i].taken && p.cands[i].drive.Size >= j.ImageSize {
			p.take(j, i)
		}
	}
}

// take gives candidate i to j.
func (p *plan) take(j *Job, i int) {
	c := &p.cands[i]
	n := &p.nodes[c.node]
	c.taken = true
	p.free--
	d := c.drive
	p.unbound(n, d)
	p.out = append(p.out, Placement{
		JobID:     j.ID,
		NodeID:    n.node.ID,
		Epoch:     n.node.Epoch,
		Drive:     DriveIdentity{ID: d.ID, Serial: d.Serial, Model: d.Model, Size: d.Size},
		Slot:      d.Slot,
		SlotLabel: d.SlotLabel,
	})
}
