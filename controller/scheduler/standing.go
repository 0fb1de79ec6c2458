package scheduler

import "time"

// order is one standing order's pass over the candidates.
type order struct {
	job     *Job
	need    int    // tasks still to place
	minSize uint64 // the selector's minimum or the image size, the larger
	tried   map[DriveRef]time.Time
	// skipped is set once a matching drive was passed over only because
	// this job tried it already: another job with the same selector may
	// still take it, so the shared cursor must not move past it.
	skipped bool
}

// standing places j's standing order on matching fresh drives, in candidate
// order, until the order is covered.
func (p *plan) standing(j *Job) {
	o := order{job: j, need: j.Count - j.holding(), minSize: max(j.Selector.MinSize, j.ImageSize)}
	if o.need <= 0 || !o.fits(&p.all) {
		return
	}
	o.tried = tried(j)
	key := selectorKey(j)
	i := p.cursor[key]
	mark := i
	for i < len(p.cands) && o.need > 0 {
		n := &p.nodes[p.cands[i].node]
		if o.fits(&n.bounds) && nodeMatches(j.Selector, n.node) {
			i = p.takeOnNode(&o, i, n.hi)
		} else {
			i = n.hi
		}
		if !o.skipped {
			mark = i
		}
	}
	p.cursor[key] = mark
}

// takeOnNode gives o the matching candidates from i up to hi, one node's,
// until o is covered, and says where it stopped.
func (p *plan) takeOnNode(o *order, i, hi int) int {
	for ; i < hi && o.need > 0; i++ {
		c := &p.cands[i]
		if !c.orderable() || !driveMatches(o.job.Selector, o.minSize, c.drive) {
			continue
		}
		ref := DriveRef{p.nodes[c.node].node.ID, c.drive.ID}
		if last, ok := o.tried[ref]; ok && !last.Before(c.drive.Inserted) {
			o.skipped = true // tried since it was inserted: not again
			continue
		}
		p.take(o.job, i)
		o.need--
	}
	return i
}

// fits reports whether b's drives hold one that o may take, but for the
// ones o tried already.
func (o *order) fits(b *bounds) bool {
	r := o.job.Selector.Removable
	for k, removable := range [2]bool{false, true} {
		if (r == nil || *r == removable) && b.fresh[k] > 0 && b.largest[k] >= o.minSize {
			return true
		}
	}
	return false
}

// tried maps the drives j has had a task on to when its latest one there
// was created.
func tried(j *Job) map[DriveRef]time.Time {
	if len(j.Tasks) == 0 {
		return nil
	}
	out := make(map[DriveRef]time.Time, len(j.Tasks))
	for _, t := range j.Tasks {
		if last, ok := out[t.ref()]; !ok || t.Created.After(last) {
			out[t.ref()] = t.Created
		}
	}
	return out
}
