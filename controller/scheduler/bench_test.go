package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// benchFarm builds a farm of nodes × drives of mixed pools, sites, sizes and
// kinds, and jobs standing orders of count each with selectors of five kinds
// and two image sizes, so that placement does real matching work.
func benchFarm(nodes, drives, jobs, count int) ([]Job, Farm) {
	var f Farm
	sizes := []uint64{8 * gib, 16 * gib, 32 * gib, 64 * gib}
	for i := range nodes {
		pool := "usb"
		if i%4 == 3 {
			pool = "ssd"
		}
		n := labeled(node(fmt.Sprintf("bench-%03d", i), pool), "site", []string{"lyon", "nantes"}[i%2])
		for j := range drives {
			d := usbKey(fmt.Sprintf("usb-Kingston_DataTraveler_%03d%02d", i, j), sizes[(i+j)%len(sizes)])
			d.Slot = fmt.Sprintf("pci-0000:00:14.0-usb-0:%d.%d:1.0-scsi-0:0:0:0", j/4+1, j%4+1)
			d.Removable = pool == "usb"
			n.Drives = append(n.Drives, d)
		}
		f.Nodes = append(f.Nodes, n)
	}
	selectors := []Selector{
		{},
		{Pool: "usb"},
		{Labels: map[string]string{"site": "lyon"}},
		{MinSize: 32 * gib},
		{Pool: "ssd", Removable: ptr(false)},
	}
	out := make([]Job, jobs)
	for i := range out {
		image := []uint64{4 * gib, 12 * gib}[i%2]
		out[i] = orderJob(fmt.Sprintf("job-%05d", i), 0, image, count, selectors[i%len(selectors)])
		out[i].Created = t0.Add(time.Duration(i) * time.Second)
	}
	return out, f
}

// occupy records placements the way the controller does: as tasks under way
// in their jobs and as the drives' TaskID.
func occupy(jobs []Job, f Farm, ps []Placement) {
	byID := map[string]*Job{}
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	drives := map[DriveRef]*Drive{}
	for i := range f.Nodes {
		for j := range f.Nodes[i].Drives {
			drives[DriveRef{f.Nodes[i].ID, f.Nodes[i].Drives[j].ID}] = &f.Nodes[i].Drives[j]
		}
	}
	for k, p := range ps {
		id := fmt.Sprintf("task-%d", k)
		j := byID[p.JobID]
		j.Tasks = append(j.Tasks, Task{ID: id, NodeID: p.NodeID, DriveID: p.Drive.ID, State: writing, Created: t0})
		drives[p.Ref()].TaskID = id
	}
}

// BenchmarkPlace runs Place at issue 4's scale: 200 nodes × 16 drives and
// 10,000 standing-order tasks waiting. Place runs on every change and every
// second, so each case must stay far below a second.
func BenchmarkPlace(b *testing.B) {
	cases := []struct {
		name        string
		jobs, count int
		busy        bool // the farm is full: every drive written by a task placed before
		freeNodes   int  // nodes whose tasks finished and whose drives were swapped
		// Every job has an image of its own size, 12 GiB and a few bytes:
		// no two share a selector key, and a quarter of the drives are
		// too small for all of them.
		ownSizes bool
	}{
		{"idle-farm/1000x10", 1000, 10, false, 0, false},
		{"idle-farm/10000x1", 10000, 1, false, 0, false},
		{"full-farm/1000x10", 1000, 10, true, 0, false},
		{"full-farm-16-swapped/1000x10", 1000, 10, true, 1, false},
		{"full-farm-16-swapped/10000x1", 10000, 1, true, 1, false},
		{"idle-farm-own-image-sizes/10000x1", 10000, 1, false, 0, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			jobs, f := benchFarm(200, 16, c.jobs, c.count)
			if c.ownSizes {
				for i := range jobs {
					jobs[i].Selector, jobs[i].ImageSize = &Selector{}, 12*gib+uint64(i)
				}
			}
			if c.busy {
				occupy(jobs, f, Place(jobs, f))
			}
			for i := range c.freeNodes { // fresh keys: new ids, nothing under way
				for j := range f.Nodes[i].Drives {
					d := &f.Nodes[i].Drives[j]
					d.ID, d.TaskID = d.ID+"-new", ""
				}
			}
			var placed int
			b.ReportAllocs()
			for b.Loop() {
				placed = len(Place(jobs, f))
			}
			b.ReportMetric(float64(placed), "placements/op")
		})
	}
}
