package scheduler

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestPlace(t *testing.T) {
	bench := func() Node { return node("n1", "usb", usbKey("a", 8*gib), usbKey("b", 8*gib), usbKey("c", 8*gib)) }
	tests := []struct {
		name string
		farm Farm
		jobs []Job
		want []string
	}{
		// Explicit drives.
		{"explicit free drives", farm(bench()),
			[]Job{explicitJob("j1", 0, gib, "n1/c", "n1/a")}, []string{"j1>n1/c", "j1>n1/a"}},
		{"explicit busy drive waits", farm(node("n1", "usb", busy(usbKey("a", 8*gib), "t9"), usbKey("b", 8*gib))),
			[]Job{explicitJob("j1", 0, gib, "n1/a", "n1/b")}, []string{"j1>n1/b"}},
		{"explicit drive held by another job's task", farm(bench()),
			[]Job{explicitJob("j1", 0, gib, "n1/a"), withTasks(explicitJob("j0", 5, gib, "n1/a"), task("t1", "n1/a", writing))},
			[]string{}},
		{"explicit refused drive", farm(node("n1", "usb", refused(ssd("sys", 500*gib), "holds the root file system"))),
			[]Job{explicitJob("j1", 0, gib, "n1/sys")}, []string{}},
		{"explicit drive smaller than image", farm(node("n1", "usb", usbKey("a", 4*gib))),
			[]Job{explicitJob("j1", 0, 5*gib, "n1/a")}, []string{}},
		{"explicit drive exactly image size", farm(node("n1", "usb", usbKey("a", 4*gib))),
			[]Job{explicitJob("j1", 0, 4*gib, "n1/a")}, []string{"j1>n1/a"}},
		{"explicit on lost, draining and unset nodes", farm(nodeIn(lost, bench()), nodeIn(draining, node("n2", "usb", usbKey("a", 8*gib))), nodeIn(0, node("n3", "usb", usbKey("a", 8*gib)))),
			[]Job{explicitJob("j1", 0, gib, "n1/a", "n2/a", "n3/a")}, []string{}},
		{"explicit unknown drive waits", farm(bench()),
			[]Job{explicitJob("j1", 0, gib, "n1/zz", "n9/a")}, []string{}},
		{"explicit drive tried once is never retried", farm(bench()),
			[]Job{withTasks(explicitJob("j1", 0, gib, "n1/a", "n1/b", "n1/c"),
				task("t1", "n1/a", failed), task("t2", "n1/b", lostT))}, []string{"j1>n1/c"}},
		{"explicit drive listed twice placed once", farm(bench()),
			[]Job{explicitJob("j1", 0, gib, "n1/a", "n1/a")}, []string{"j1>n1/a"}},
		{"explicit job may rewrite a written drive", farm(node("n1", "usb", written(usbKey("a", 8*gib), "t0"))),
			[]Job{explicitJob("j1", 0, gib, "n1/a")}, []string{"j1>n1/a"}},

		// Standing orders.
		{"order takes count drives in slot order", farm(node("n1", "usb", inSlot(usbKey("a", 8*gib), "p3"), inSlot(usbKey("b", 8*gib), "p1"), inSlot(usbKey("c", 8*gib), "p2"))),
			[]Job{orderJob("j1", 0, gib, 2, Selector{})}, []string{"j1>n1/b", "j1>n1/c"}},
		{"order fills nodes in id order", farm(node("n2", "usb", usbKey("a", 8*gib)), node("n1", "usb", usbKey("b", 8*gib), usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 3, Selector{})}, []string{"j1>n1/a", "j1>n1/b", "j1>n2/a"}},
		{"order counts done and running tasks", farm(bench()),
			[]Job{withTasks(orderJob("j1", 0, gib, 3, Selector{}), task("t1", "n9/x", done), task("t2", "n9/y", writing))},
			[]string{"j1>n1/a"}},
		{"order covered places nothing", farm(bench()),
			[]Job{withTasks(orderJob("j1", 0, gib, 1, Selector{}), task("t1", "n9/x", done))}, []string{}},
		{"order replaces a failed task on another drive", farm(bench()),
			[]Job{withTasks(orderJob("j1", 0, gib, 1, Selector{}), task("t1", "n1/a", failed))}, []string{"j1>n1/b"}},
		{"order retakes a drive re-inserted after its failure", farm(node("n1", "usb", insertedAt(usbKey("a", 8*gib), t0.Add(time.Hour)))),
			[]Job{withTasks(orderJob("j1", 0, gib, 1, Selector{}), task("t1", "n1/a", failed))}, []string{"j1>n1/a"}},
		{"order leaves a written drive to be pulled", farm(node("n1", "usb", written(usbKey("a", 8*gib), "t0"), usbKey("b", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 2, Selector{})}, []string{"j1>n1/b"}},
		{"order skips refused, busy and small drives", farm(node("n1", "usb", refused(usbKey("a", 8*gib), "mounted"), busy(usbKey("b", 8*gib), "t7"), usbKey("c", 2*gib), usbKey("d", 8*gib))),
			[]Job{orderJob("j1", 0, 4*gib, 4, Selector{})}, []string{"j1>n1/d"}},
		{"order skips lost and draining nodes", farm(nodeIn(lost, node("n1", "usb", usbKey("a", 8*gib))), nodeIn(draining, node("n2", "usb", usbKey("a", 8*gib))), node("n3", "usb", usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 3, Selector{})}, []string{"j1>n3/a"}},
		{"order by pool", farm(node("n1", "ssd", ssd("a", 8*gib)), node("n2", "usb", usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 2, Selector{Pool: "usb"})}, []string{"j1>n2/a"}},
		{"order by labels, all must match", farm(labeled(node("n1", "usb", usbKey("a", 8*gib)), "site", "lyon"), labeled(node("n2", "usb", usbKey("a", 8*gib)), "site", "lyon", "rack", "3"), labeled(node("n3", "usb", usbKey("a", 8*gib)), "site", "nantes", "rack", "3")),
			[]Job{orderJob("j1", 0, gib, 3, Selector{Labels: map[string]string{"site": "lyon", "rack": "3"}})}, []string{"j1>n2/a"}},
		{"order by node ids", farm(node("n1", "usb", usbKey("a", 8*gib)), node("n2", "usb", usbKey("a", 8*gib)), node("n3", "usb", usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 3, Selector{NodeIDs: []string{"n3", "n1"}})}, []string{"j1>n1/a", "j1>n3/a"}},
		{"order by min size", farm(node("n1", "usb", usbKey("a", 16*gib), usbKey("b", 32*gib), usbKey("c", 64*gib))),
			[]Job{orderJob("j1", 0, gib, 3, Selector{MinSize: 32 * gib})}, []string{"j1>n1/b", "j1>n1/c"}},
		{"order image size beats a lower min size", farm(node("n1", "usb", usbKey("a", 16*gib), usbKey("b", 32*gib))),
			[]Job{orderJob("j1", 0, 20*gib, 3, Selector{MinSize: 8 * gib})}, []string{"j1>n1/b"}},
		{"order removable only", farm(node("n1", "usb", ssd("a", 8*gib), usbKey("b", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 2, Selector{Removable: ptr(true)})}, []string{"j1>n1/b"}},
		{"order fixed only", farm(node("n1", "usb", ssd("a", 8*gib), usbKey("b", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 2, Selector{Removable: ptr(false)})}, []string{"j1>n1/a"}},
		{"order with zero count places nothing", farm(bench()),
			[]Job{orderJob("j1", 0, gib, 0, Selector{})}, []string{}},

		// Competition between jobs.
		{"oldest order wins, the younger takes the rest", farm(bench()),
			[]Job{orderJob("young", 5, gib, 3, Selector{}), orderJob("old", 0, gib, 2, Selector{})},
			[]string{"old>n1/a", "old>n1/b", "young>n1/c"}},
		{"same age: lower id first", farm(bench()),
			[]Job{orderJob("jb", 0, gib, 2, Selector{}), orderJob("ja", 0, gib, 2, Selector{})},
			[]string{"ja>n1/a", "ja>n1/b", "jb>n1/c"}},
		{"older explicit job keeps its drive from a younger order", farm(bench()),
			[]Job{orderJob("order", 5, gib, 3, Selector{}), explicitJob("exp", 0, gib, "n1/a")},
			[]string{"exp>n1/a", "order>n1/b", "order>n1/c"}},
		{"older order takes a drive a younger explicit job waits for", farm(bench()),
			[]Job{explicitJob("exp", 5, gib, "n1/a"), orderJob("order", 0, gib, 1, Selector{})},
			[]string{"order>n1/a"}},
		{"a drive one order tried is left to another", farm(bench()),
			[]Job{withTasks(orderJob("old", 0, gib, 1, Selector{}), task("t1", "n1/a", failed)), orderJob("young", 5, gib, 2, Selector{})},
			[]string{"old>n1/b", "young>n1/a", "young>n1/c"}},
		{"orders with different selectors share the farm", farm(node("n1", "usb", usbKey("a", 8*gib), usbKey("b", 32*gib)), node("n2", "usb", usbKey("a", 32*gib))),
			[]Job{orderJob("big", 0, 16*gib, 5, Selector{}), orderJob("small", 1, gib, 5, Selector{})},
			[]string{"big>n1/b", "big>n2/a", "small>n1/a"}},

		// A farm that is not what it should be.
		{"drive id shared by two drives is never placed", farm(node("n1", "usb", usbKey("a", 8*gib), inSlot(usbKey("a", 8*gib), "other"), usbKey("b", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 3, Selector{}), explicitJob("j2", 1, gib, "n1/a")}, []string{"j1>n1/b"}},
		{"node id listed twice is never placed", farm(node("n1", "usb", usbKey("a", 8*gib)), node("n1", "usb", usbKey("a", 8*gib)), node("n2", "usb", usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 3, Selector{})}, []string{"j1>n2/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summary(Place(tt.jobs, tt.farm))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Place() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPlaceIdentity(t *testing.T) {
	d := usbKey("a", 8*gib)
	d.SlotLabel = "bench 1, port 3"
	got := Place([]Job{orderJob("j1", 0, gib, 1, Selector{})}, farm(node("n1", "usb", d)))
	want := []Placement{{
		JobID: "j1", NodeID: "n1", Epoch: 7, Slot: "usb-a", SlotLabel: "bench 1, port 3",
		Drive: DriveIdentity{ID: "a", Serial: "SN-a", Model: "Cruzer", Size: 8 * gib},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Place() = %+v, want %+v", got, want)
	}
}

// TestPlaceStandingOrderTakesNewDrives follows a standing order for five keys
// while a technician plugs them in two at a time.
func TestPlaceStandingOrderTakesNewDrives(t *testing.T) {
	job := orderJob("j1", 0, gib, 5, Selector{Pool: "usb", Removable: ptr(true)})
	if err := ValidateSubmit(job, farm(node("n1", "usb"))); err != nil {
		t.Fatalf("ValidateSubmit(order on an empty bench) = %v, want nil", err)
	}
	var keys []Drive
	wants := [][]string{{}, {"j1>n1/k0", "j1>n1/k1"}, {"j1>n1/k2", "j1>n1/k3"}, {"j1>n1/k4"}, {}}
	for round, want := range wants {
		f := farm(node("n1", "usb", keys...))
		got := Place([]Job{job}, f)
		if s := summary(got); !slices.Equal(s, want) {
			t.Fatalf("round %d: Place() = %q, want %q", round, s, want)
		}
		for _, p := range got { // the controller records the placements as tasks
			job.Tasks = append(job.Tasks, task("t-"+p.Drive.ID, p.Ref().String(), queued))
		}
		keys = append(keys, usbKey("k"+string(rune('0'+2*round)), 8*gib), usbKey("k"+string(rune('1'+2*round)), 8*gib))
	}
}

// TestPlaceDeterministic shuffles how the same snapshot is listed.
func TestPlaceDeterministic(t *testing.T) {
	jobs, f := benchFarm(8, 6, 40, 5)
	want := summary(Place(jobs, f))
	if len(want) == 0 {
		t.Fatal("Place() placed nothing; the test farm is wrong")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		rng.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
		rng.Shuffle(len(f.Nodes), func(i, j int) { f.Nodes[i], f.Nodes[j] = f.Nodes[j], f.Nodes[i] })
		for _, n := range f.Nodes {
			rng.Shuffle(len(n.Drives), func(i, j int) { n.Drives[i], n.Drives[j] = n.Drives[j], n.Drives[i] })
		}
		if got := summary(Place(jobs, f)); !slices.Equal(got, want) {
			t.Fatalf("Place(shuffled) = %q, want %q", got, want)
		}
	}
}

// TestPlaceInvariants checks, on a busy farm, the rules no job can break.
func TestPlaceInvariants(t *testing.T) {
	jobs, f := benchFarm(20, 16, 300, 3)
	for i := range f.Nodes {
		if i%5 == 0 {
			f.Nodes[i].State = lost
		}
		f.Nodes[i].Drives[0] = refused(f.Nodes[i].Drives[0], "holds the root file system")
	}
	before := deepCopy(jobs, f)
	got := Place(jobs, f)
	if !reflect.DeepEqual(before, deepCopy(jobs, f)) {
		t.Error("Place modified its arguments")
	}
	if len(got) == 0 {
		t.Fatal("Place() placed nothing; the test farm is wrong")
	}
	drives := map[DriveRef]*Drive{}
	up := map[string]bool{}
	for i := range f.Nodes {
		up[f.Nodes[i].ID] = f.Nodes[i].State == online
		for j := range f.Nodes[i].Drives {
			drives[DriveRef{f.Nodes[i].ID, f.Nodes[i].Drives[j].ID}] = &f.Nodes[i].Drives[j]
		}
	}
	image := map[string]uint64{}
	for _, j := range jobs {
		image[j.ID] = j.ImageSize
	}
	seen := map[DriveRef]bool{}
	for _, p := range got {
		d := drives[p.Ref()]
		switch {
		case seen[p.Ref()]:
			t.Errorf("drive %s placed twice", p.Ref())
		case !up[p.NodeID]:
			t.Errorf("drive %s placed on a node that is not online", p.Ref())
		case d.Refused != "":
			t.Errorf("refused drive %s placed", p.Ref())
		case d.Size < image[p.JobID]:
			t.Errorf("drive %s (%d bytes) placed for job %s's %d-byte image", p.Ref(), d.Size, p.JobID, image[p.JobID])
		}
		seen[p.Ref()] = true
	}
}

type snapshot struct {
	Jobs []Job
	Farm Farm
}

// deepCopy copies the slices of jobs and farm that Place could reorder or
// write to, so a copy taken before can be compared with one taken after.
func deepCopy(jobs []Job, f Farm) snapshot {
	s := snapshot{Jobs: slices.Clone(jobs), Farm: Farm{Nodes: slices.Clone(f.Nodes)}}
	for i := range s.Jobs {
		s.Jobs[i].Tasks = slices.Clone(s.Jobs[i].Tasks)
		s.Jobs[i].Drives = slices.Clone(s.Jobs[i].Drives)
	}
	for i := range s.Farm.Nodes {
		s.Farm.Nodes[i].Drives = slices.Clone(s.Farm.Nodes[i].Drives)
	}
	return s
}
