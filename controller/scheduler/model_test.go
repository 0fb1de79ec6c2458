package scheduler

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// TestPlaceMatchesModel compares Place, with its cursors and bounds, against
// the rules written out the slow and obvious way, on random farms.
func TestPlaceMatchesModel(t *testing.T) {
	for seed := range uint64(3000) {
		rng := rand.New(rand.NewPCG(seed, 42))
		jobs, f := randomFarm(rng)
		got, want := summary(Place(jobs, f)), modelPlace(jobs, f)
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: Place() = %q, want %q\nfarm: %+v\njobs: %+v", seed, got, want, f, jobs)
		}
	}
}

// modelPlace is Place's rules, one drive and one job at a time.
func modelPlace(jobs []Job, f Farm) []string {
	type slot struct {
		node *Node
		d    *Drive
	}
	var order []slot
	count := map[string]int{}
	for _, n := range f.Nodes {
		count[n.ID]++
	}
	for i := range f.Nodes {
		n := &f.Nodes[i]
		if n.State != online || count[n.ID] > 1 {
			continue
		}
		for j := range n.Drives {
			if findDrive(n, n.Drives[j].ID) != nil { // unique id
				order = append(order, slot{n, &n.Drives[j]})
			}
		}
	}
	slices.SortFunc(order, func(a, b slot) int {
		return cmp.Or(cmp.Compare(a.node.ID, b.node.ID), cmp.Compare(a.d.Slot, b.d.Slot), cmp.Compare(a.d.ID, b.d.ID))
	})
	taken := map[DriveRef]bool{}
	for _, j := range jobs {
		for _, t := range j.Tasks {
			taken[t.ref()] = taken[t.ref()] || active(t.State)
		}
	}
	var out []string
	for _, j := range byAge(jobs) {
		need := j.Count - j.holding()
		for _, s := range order {
			ref := DriveRef{s.node.ID, s.d.ID}
			ok := !taken[ref] && s.d.TaskID == "" && s.d.Refused == "" && s.d.Size >= j.ImageSize
			switch {
			case !ok:
			case len(j.Drives) > 0:
				ok = slices.Contains(j.Drives, ref) && !slices.ContainsFunc(j.Tasks, func(t Task) bool { return t.ref() == ref })
			case j.Selector != nil:
				ok = need > 0 && nodeMatches(j.Selector, s.node) && driveMatches(j.Selector, j.Selector.MinSize, s.d) &&
					s.d.LastTaskID == "" && !slices.ContainsFunc(j.Tasks, func(t Task) bool { return t.ref() == ref && !t.Created.Before(s.d.Inserted) })
			default:
				ok = false
			}
			if ok {
				taken[ref] = true
				need--
				out = append(out, j.ID+">"+ref.String())
			}
		}
	}
	return explicitInListOrder(out, jobs)
}

// explicitInListOrder reorders each explicit job's placements as its drive
// list orders them, which is what Place promises; the model above walks
// drives in farm order.
func explicitInListOrder(out []string, jobs []Job) []string {
	for _, j := range jobs {
		if len(j.Drives) == 0 {
			continue
		}
		var idx []int
		for i, s := range out {
			if len(s) > len(j.ID) && s[:len(j.ID)+1] == j.ID+">" {
				idx = append(idx, i)
			}
		}
		var mine []string
		for _, ref := range j.Drives {
			for _, i := range idx {
				if out[i] == j.ID+">"+ref.String() && !slices.Contains(mine, out[i]) {
					mine = append(mine, out[i])
				}
			}
		}
		for k, i := range idx {
			out[i] = mine[k]
		}
	}
	return out
}

// randomFarm makes a small farm where collisions are likely: shared ids,
// equal slots and ages, drives of every state, jobs with tasks of every state.
func randomFarm(rng *rand.Rand) ([]Job, Farm) {
	var f Farm
	var refs []string
	for range 1 + rng.IntN(6) {
		n := randomNode(rng)
		for _, d := range n.Drives {
			refs = append(refs, n.ID+"/"+d.ID)
		}
		f.Nodes = append(f.Nodes, n)
	}
	refs = append(refs, "n9/a", "n1/z") // drives the farm does not have
	states := []imagefarmv1.TaskState{queued, writing, done, failed, lostT}
	jobs := make([]Job, 1+rng.IntN(12))
	for i := range jobs {
		jobs[i] = randomJob(rng, fmt.Sprintf("j%d", i), refs)
		for range rng.IntN(4) {
			tk := task(fmt.Sprintf("t%d", rng.Uint32()), refs[rng.IntN(len(refs))], states[rng.IntN(len(states))])
			tk.Created = t0.Add(time.Duration(rng.IntN(3))*time.Hour - time.Duration(rng.IntN(2))*time.Minute)
			jobs[i].Tasks = append(jobs[i].Tasks, tk)
		}
	}
	return jobs, f
}

var randomSizes = []uint64{4 * gib, 8 * gib, 16 * gib, 32 * gib}

func pick(rng *rand.Rand, s ...string) string { return s[rng.IntN(len(s))] }

func randomNode(rng *rand.Rand) Node {
	n := labeled(node(pick(rng, "n1", "n2", "n3", "n4", "n5", "n6", "n7"), pick(rng, "usb", "ssd")), "site", pick(rng, "a", "b"))
	n.State = []imagefarmv1.NodeState{online, online, online, lost, draining}[rng.IntN(5)]
	for range rng.IntN(7) {
		d := usbKey(pick(rng, "a", "b", "c", "d", "e", "f", "g", "h", "a"), randomSizes[rng.IntN(4)])
		d.Slot, d.Removable = pick(rng, "p1", "p2", "p3", "p4", ""), rng.IntN(3) > 0
		d.Inserted = t0.Add(time.Duration(rng.IntN(3)) * time.Hour)
		switch rng.IntN(10) {
		case 0:
			d.Refused = "mounted"
		case 1:
			d.TaskID = "other"
		case 2:
			d.LastTaskID = "old"
		}
		n.Drives = append(n.Drives, d)
	}
	return n
}

// randomJob makes an explicit job over some of refs, or a standing order;
// image sizes are few so that orders often share a selector key.
func randomJob(rng *rand.Rand, id string, refs []string) Job {
	age, image := rng.IntN(4), randomSizes[rng.IntN(2)]/2+uint64(rng.IntN(2))
	if rng.IntN(5) < 2 {
		var mine []string
		for range 1 + rng.IntN(4) {
			mine = append(mine, refs[rng.IntN(len(refs))])
		}
		return explicitJob(id, age, image, mine...)
	}
	sel := Selector{Pool: pick(rng, "", "", "usb"), MinSize: []uint64{0, 0, 8 * gib, 16 * gib}[rng.IntN(4)]}
	if rng.IntN(3) == 0 {
		sel.Labels = map[string]string{"site": pick(rng, "a", "b")}
	}
	if rng.IntN(4) == 0 {
		sel.NodeIDs = []string{pick(rng, "n1", "n2", "n3"), pick(rng, "n4", "n5", "n1")}
	}
	if rng.IntN(3) == 0 {
		sel.Removable = ptr(rng.IntN(2) == 0)
	}
	return orderJob(id, age, image, rng.IntN(7), sel)
}
