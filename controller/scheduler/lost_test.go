package scheduler

import (
	"slices"
	"testing"
	"time"
)

func TestLost(t *testing.T) {
	now := t0.Add(time.Hour)
	heard := func(n Node, ago time.Duration) Node { n.LastHeartbeat = now.Add(-ago); return n }
	f := farm(
		heard(node("n1", "usb"), 20*time.Second),
		heard(node("n2", "usb"), 5*time.Second),
		heard(node("n0", "usb"), DefaultHeartbeatTTL), // exactly the TTL: not yet
		heard(nodeIn(lost, node("n3", "usb")), time.Hour),
		heard(nodeIn(draining, node("n4", "usb")), 16*time.Second),
		heard(nodeIn(0, node("n5", "usb")), time.Hour),
		node("n6", "usb"), // online, never heard from at all
	)
	tests := []struct {
		ttl  time.Duration
		want []string
	}{
		{0, []string{"n1", "n4", "n6"}},
		{-time.Second, []string{"n1", "n4", "n6"}},
		{30 * time.Second, []string{"n6"}},
		{time.Second, []string{"n0", "n1", "n2", "n4", "n6"}},
	}
	for _, tt := range tests {
		if got := Lost(f, now, tt.ttl); !slices.Equal(got, tt.want) {
			t.Errorf("Lost(ttl %v) = %q, want %q", tt.ttl, got, tt.want)
		}
	}
}

func TestLostTasks(t *testing.T) {
	jobs := []Job{
		withTasks(orderJob("order", 5, gib, 4, Selector{}),
			task("o1", "n1/a", queued), task("o2", "n1/b", failed), task("o3", "n2/a", writing), task("o4", "n1/c", writing)),
		withTasks(explicitJob("exp", 0, gib, "n1/d", "n1/e", "n2/b"),
			task("e1", "n1/d", writing), task("e2", "n1/e", done), task("e3", "n2/b", writing)),
	}
	want := []LostTask{
		{JobID: "exp", TaskID: "e1", NodeID: "n1", DriveID: "d"},
		{JobID: "order", TaskID: "o1", NodeID: "n1", DriveID: "a", Requeue: true},
		{JobID: "order", TaskID: "o4", NodeID: "n1", DriveID: "c", Requeue: true},
	}
	if got := LostTasks("n1", jobs); !slices.Equal(got, want) {
		t.Errorf("LostTasks(n1) = %+v, want %+v", got, want)
	}
	if got := LostTasks("n3", jobs); len(got) != 0 {
		t.Errorf("LostTasks(n3) = %+v, want none", got)
	}
}

// TestLostNodeFlow follows a node that is lost mid-job and comes back: the
// standing order moves to other drives, the explicit job does not, and the
// drives that were being written are not taken again until re-inserted.
func TestLostNodeFlow(t *testing.T) {
	n1 := node("n1", "usb", usbKey("a", 8*gib), usbKey("b", 8*gib))
	n2 := node("n2", "usb", usbKey("a", 8*gib))
	jobs := []Job{orderJob("order", 0, gib, 1, Selector{}), explicitJob("exp", 1, gib, "n1/b")}
	place := func(f Farm) []string {
		t.Helper()
		ps := Place(jobs, f)
		for _, p := range ps {
			for i := range jobs {
				if jobs[i].ID == p.JobID {
					jobs[i].Tasks = append(jobs[i].Tasks, task("t-"+p.JobID, p.Ref().String(), writing))
				}
			}
		}
		return summary(ps)
	}
	if got, want := place(farm(n1, n2)), []string{"order>n1/a", "exp>n1/b"}; !slices.Equal(got, want) {
		t.Fatalf("Place() = %q, want %q", got, want)
	}

	// n1 goes silent: both tasks end LOST, only the order is queued again.
	f := farm(n1, n2)
	f.Nodes[0].LastHeartbeat = t0.Add(-time.Minute)
	if got := Lost(f, t0, 0); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("Lost() = %q, want [n1]", got)
	}
	lostTasks := LostTasks("n1", jobs)
	if len(lostTasks) != 2 || !lostTasks[0].Requeue || lostTasks[1].Requeue {
		t.Fatalf("LostTasks(n1) = %+v, want the order's task requeued, then exp's not", lostTasks)
	}
	for i := range jobs { // the controller ends them and notes it on the drives
		jobs[i].Tasks[0].State = lostT
	}
	n1.Drives[0].LastTaskID, n1.Drives[1].LastTaskID = "t-order", "t-exp"
	n1.State, n1.Epoch = lost, 8
	if got, want := place(farm(n1, n2)), []string{"order>n2/a"}; !slices.Equal(got, want) {
		t.Fatalf("Place() after n1 was lost = %q, want %q", got, want)
	}

	// n1 is back with the same drives; the order needs one more key.
	jobs[0].Count = 2
	n1.State = online
	if got := place(farm(n1, n2)); len(got) != 0 {
		t.Fatalf("Place() with n1 back = %q, want nothing: its half-written drives wait to be re-plugged", got)
	}
	n1.Drives[0].LastTaskID = "" // even without the note, the order's own task on key a counts
	if got := place(farm(n1, n2)); len(got) != 0 {
		t.Fatalf("Place() = %q, want nothing: the order tried key a since it was inserted", got)
	}
	n1.Drives[0].Inserted = t0.Add(time.Hour) // the technician re-plugs key a
	if got, want := place(farm(n1, n2)), []string{"order>n1/a"}; !slices.Equal(got, want) {
		t.Fatalf("Place() after re-plugging = %q, want %q", got, want)
	}
	if p := Place([]Job{orderJob("o2", 0, gib, 1, Selector{})}, farm(n1)); p[0].Epoch != 8 {
		t.Errorf("Placement.Epoch = %d, want the node's new epoch 8", p[0].Epoch)
	}
}
