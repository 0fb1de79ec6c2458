package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Waiting says why each job that placements ps leave short of drives
// waits, for a person to read: for a standing order, what the drives it
// could take are doing (busy, written since they were inserted) and why
// the others are not for it (too small, fixed or removable, refused, on a
// node that is away); for an explicit job, what each drive it still needs
// is doing. ps are what Place returned for jobs and f: a drive they take
// is busy, and a job they cover is not waiting. Jobs that do not wait are
// absent. The farm's drives are sorted once per selector, whatever the
// orders' sizes, so a thousand orders cost one pass over the farm.
func Waiting(jobs []Job, f Farm, ps []Placement) map[string]string {
	w := newWaitView(jobs, f, ps)
	out := map[string]string{}
	for i := range jobs {
		j := &jobs[i]
		var why string
		switch {
		case len(j.Drives) > 0:
			why = w.explicit(j)
		case j.Selector != nil:
			why = w.standing(j)
		}
		if why != "" {
			out[j.ID] = why
		}
	}
	return out
}

// waitView is the farm as Waiting reads it.
type waitView struct {
	nodes  []*Node // every node, by id, whatever its state
	busy   map[DriveRef]bool
	placed map[string]int // placements per job
	taken  map[jobDrive]bool
	drives map[DriveRef]driveAt
	fleets map[string]*fleet // by fleetKey
	orders map[string]string // a standing order's reason by selectorKey
}

// driveAt is a drive and its node.
type driveAt struct {
	node  *Node
	drive *Drive
}

// jobDrive is a job's placement on a drive.
type jobDrive struct {
	job string
	ref DriveRef
}

func newWaitView(jobs []Job, f Farm, ps []Placement) *waitView {
	w := &waitView{busy: busyDrives(jobs), placed: map[string]int{}, taken: map[jobDrive]bool{},
		drives: map[DriveRef]driveAt{}, fleets: map[string]*fleet{}, orders: map[string]string{}}
	for i := range f.Nodes {
		n := &f.Nodes[i]
		w.nodes = append(w.nodes, n)
		for k := range n.Drives {
			d := &n.Drives[k]
			w.drives[DriveRef{n.ID, d.ID}] = driveAt{n, d}
			if d.TaskID != "" {
				w.busy[DriveRef{n.ID, d.ID}] = true
			}
		}
	}
	slices.SortStableFunc(w.nodes, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	for _, p := range ps {
		w.busy[p.Ref()] = true
		w.placed[p.JobID]++
		w.taken[jobDrive{p.JobID, p.Ref()}] = true
	}
	return w
}

// standing is why order j waits, "" if it has every drive it needs. The
// drives j's own tasks hold are no reason for it to wait: they are left
// out. Jobs with the same selectorKey and no task under way share one
// reason.
func (w *waitView) standing(j *Job) string {
	need := j.Count - j.holding() - w.placed[j.ID]
	if need <= 0 {
		return ""
	}
	own := w.own(j)
	key := selectorKey(j)
	why, ok := w.orders[key]
	if !ok || len(own) > 0 {
		fk := fleetKey(j.Selector)
		fl := w.fleets[fk]
		if fl == nil {
			fl = w.fleet(j.Selector)
			w.fleets[fk] = fl
		}
		minSize := max(j.Selector.MinSize, j.ImageSize)
		t, virtual := fl.tally(minSize)
		t.drop(waitBusy, w.busyFor(own, j.Selector, minSize))
		why = t.why(j.Selector, minSize, virtual)
		if len(own) == 0 {
			w.orders[key] = why
		}
	}
	return fmt.Sprintf("needs %s: %s", countOf(need, "more drive"), why)
}

// busyFor are the drives of refs that an order with selector s and
// minimum size minSize counts as busy.
func (w *waitView) busyFor(refs map[DriveRef]bool, s *Selector, minSize uint64) []DriveRef {
	var out []DriveRef
	for ref := range refs {
		at, ok := w.drives[ref]
		if ok && nodeMatches(s, at.node) && at.drive.Size >= minSize && w.why(at.node, at.drive, s) == waitBusy {
			out = append(out, ref)
		}
	}
	return out
}

// own are the drives j's tasks under way, and its placements now, hold.
func (w *waitView) own(j *Job) map[DriveRef]bool {
	var out map[DriveRef]bool
	add := func(ref DriveRef) {
		if out == nil {
			out = map[DriveRef]bool{}
		}
		out[ref] = true
	}
	for _, t := range j.Tasks {
		if active(t.State) {
			add(t.ref())
		}
	}
	if w.placed[j.ID] > 0 {
		for jd := range w.taken {
			if jd.job == j.ID {
				add(jd.ref)
			}
		}
	}
	return out
}

// Why a drive is not for a standing order, in the order they are told:
// what a person can act on first.
const (
	waitWritten = iota
	waitBusy
	waitFree
	waitSmall
	waitKind
	waitRefused
	waitAway
	waitKinds
)

// sized are the kinds that a drive smaller than the order's minimum size
// leaves for waitSmall.
const sized = waitFree + 1

// named is how many drives of a kind a reason names; it counts the rest.
const named = 8

// fleet sorts the drives of the nodes a selector matches by why an order
// with that selector, whatever its size, cannot take them: the kinds up to
// sized, smallest first, so that one search splits off the drives too
// small for a given order; the others in node order.
type fleet struct {
	bySize [sized][]sizedRef
	count  [waitKinds]int
	first  [waitKinds][]DriveRef
}

type sizedRef struct {
	size    uint64
	ref     DriveRef
	virtual bool
}

// fleet scans the drives of the nodes s matches.
func (w *waitView) fleet(s *Selector) *fleet {
	fl := &fleet{}
	for _, n := range w.nodes {
		if !nodeMatches(s, n) {
			continue
		}
		for i := range n.Drives {
			d := &n.Drives[i]
			ref := DriveRef{n.ID, d.ID}
			k := w.why(n, d, s)
			if k < sized {
				fl.bySize[k] = append(fl.bySize[k], sizedRef{d.Size, ref, d.Virtual})
				continue
			}
			fl.count[k]++
			if len(fl.first[k]) < named {
				fl.first[k] = append(fl.first[k], ref)
			}
		}
	}
	for k := range fl.bySize {
		slices.SortStableFunc(fl.bySize[k], func(a, b sizedRef) int { return cmp.Compare(a.size, b.size) })
	}
	return fl
}

// why says why an order with selector s does not take drive d of node n,
// leaving its size aside.
func (w *waitView) why(n *Node, d *Drive, s *Selector) int {
	switch {
	case n.State != imagefarmv1.NodeState_NODE_STATE_ONLINE:
		return waitAway
	case d.Refused != "":
		return waitRefused
	case s.Removable != nil && *s.Removable != d.Removable:
		return waitKind
	case w.busy[DriveRef{n.ID, d.ID}]:
		return waitBusy
	case d.LastTaskID != "":
		return waitWritten
	}
	return waitFree
}

// tally is what fl holds for an order of minimum size minSize.
func (fl *fleet) tally(minSize uint64) (t fleet, virtual bool) {
	t.count, t.first = fl.count, fl.first
	for k, refs := range fl.bySize {
		i, _ := slices.BinarySearchFunc(refs, minSize, func(r sizedRef, size uint64) int { return cmp.Compare(r.size, size) })
		t.count[waitSmall] += i
		t.count[k] = len(refs) - i
		for _, r := range refs[:min(i, named)] {
			if len(t.first[waitSmall]) < named {
				t.first[waitSmall] = append(t.first[waitSmall], r.ref)
			}
		}
		for _, r := range refs[i:min(len(refs), i+named)] {
			t.first[k] = append(t.first[k], r.ref)
			virtual = virtual || (k == waitWritten && r.virtual)
		}
	}
	return t, virtual
}

// drop takes the drives in refs, which are of kind k, out of it.
func (fl *fleet) drop(k int, refs []DriveRef) {
	fl.count[k] -= len(refs)
	fl.first[k] = slices.DeleteFunc(fl.first[k], func(r DriveRef) bool { return slices.Contains(refs, r) })
}

// why says why no drive of t is for an order with selector s and minimum
// size minSize; virtual says a written drive is virtual.
func (t *fleet) why(s *Selector, minSize uint64, virtual bool) string {
	var parts []string
	add := func(k int, format string, args ...any) {
		if t.count[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s (%s)", t.count[k], fmt.Sprintf(format, args...), t.refs(k)))
		}
	}
	add(waitWritten, "written since inserted")
	if t.count[waitWritten] > 0 {
		hint := "a standing order takes only freshly inserted drives: pull and re-insert them"
		if virtual {
			hint += " (virtual drives: imagefarm dev reinsert)"
		}
		parts = append(parts, hint)
	}
	add(waitBusy, "busy with other tasks")
	add(waitSmall, "smaller than %s", size(minSize))
	if s.Removable != nil {
		add(waitKind, "%s, the order takes only %s ones", kindName(!*s.Removable), kindName(*s.Removable))
	}
	add(waitRefused, "refused by their node")
	add(waitAway, "on a node not taking tasks")
	add(waitFree, "free, placed at the next pass")
	if len(parts) == 0 {
		if where := describe(s); where != "any node" {
			return fmt.Sprintf("no node with %s has a drive: insert one", where)
		}
		return "no node has a drive: insert one"
	}
	return strings.Join(parts, "; ")
}

// refs names the drives of kind k.
func (fl *fleet) refs(k int) string {
	names := make([]string, len(fl.first[k]))
	for i, r := range fl.first[k] {
		names[i] = r.String()
	}
	s := strings.Join(names, ", ")
	if more := fl.count[k] - len(names); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func kindName(removable bool) string {
	if removable {
		return "removable"
	}
	return "fixed"
}

// explicit is why explicit job j waits, "" if every drive it names has a
// task or gets one now.
func (w *waitView) explicit(j *Job) string {
	had := make(map[DriveRef]bool, len(j.Tasks))
	for _, t := range j.Tasks {
		had[t.ref()] = true
	}
	var parts []string
	n := 0
	for _, ref := range j.Drives {
		if had[ref] || w.taken[jobDrive{j.ID, ref}] {
			continue
		}
		had[ref] = true // a drive listed twice is told once
		if n++; n <= named {
			parts = append(parts, ref.String()+" "+w.driveState(ref, j.ImageSize))
		}
	}
	if n == 0 {
		return ""
	}
	if n > len(parts) {
		parts = append(parts, fmt.Sprintf("and %d more", n-len(parts)))
	}
	return fmt.Sprintf("waits for %s: %s", countOf(n, "drive"), strings.Join(parts, "; "))
}

// driveState says why drive ref cannot take a task of an image of
// imageSize bytes now.
func (w *waitView) driveState(ref DriveRef, imageSize uint64) string {
	i := slices.IndexFunc(w.nodes, func(n *Node) bool { return n.ID == ref.NodeID })
	if i < 0 {
		return "is on no node the farm knows"
	}
	n := w.nodes[i]
	if n.State != imagefarmv1.NodeState_NODE_STATE_ONLINE {
		return fmt.Sprintf("is on node %s, which is %s", n.ID, nodeStateName(n.State))
	}
	j := slices.IndexFunc(n.Drives, func(d Drive) bool { return d.ID == ref.DriveID })
	switch {
	case j < 0:
		return "is not attached: insert it"
	case n.Drives[j].Refused != "":
		return "is refused by its node: " + n.Drives[j].Refused
	case n.Drives[j].Size < imageSize:
		return fmt.Sprintf("holds %s, the image needs %s", size(n.Drives[j].Size), size(imageSize))
	case w.busy[ref]:
		return "is busy with another task"
	}
	return "is free, placed at the next pass"
}

func nodeStateName(s imagefarmv1.NodeState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "NODE_STATE_"))
}

// countOf is "1 drive", "3 drives".
func countOf(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
