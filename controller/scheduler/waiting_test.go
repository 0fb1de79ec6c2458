package scheduler

import (
	"fmt"
	"strings"
	"testing"
)

// TestWaiting checks that every job Place leaves short says why, naming
// the drives concerned, and that a job Place covers says nothing.
func TestWaiting(t *testing.T) {
	virtual := func(d Drive) Drive { d.Virtual = true; return d }
	tests := []struct {
		name string
		farm Farm
		jobs []Job
		want map[string][]string // job id -> every part its reason must have; absent: no reason
	}{
		{"order on written virtual drives", farm(node("dev-1", "dev", virtual(written(ssd("virt-1", 8*gib), "t1")), virtual(written(ssd("virt-2", 8*gib), "t2")))),
			[]Job{orderJob("j1", 0, gib, 2, Selector{})},
			map[string][]string{"j1": {"needs 2 more drives: ", "2 written since inserted (dev-1/virt-1, dev-1/virt-2)",
				"takes only freshly inserted drives: pull and re-insert them (virtual drives: imagefarm dev reinsert)"}}},
		{"order on written keys gets no dev hint", farm(node("n1", "usb", written(usbKey("a", 8*gib), "t1"))),
			[]Job{orderJob("j1", 0, gib, 1, Selector{})},
			map[string][]string{"j1": {"needs 1 more drive: 1 written since inserted (n1/a)", "pull and re-insert them"}}},
		{"each kind of drive an order cannot take", farm(
			node("n1", "usb", busy(usbKey("a", 8*gib), "t7"), usbKey("b", 2*gib), ssd("c", 8*gib), refused(usbKey("d", 8*gib), "mounted")),
			nodeIn(lost, node("n2", "usb", usbKey("a", 8*gib))),
			node("n3", "ssd", usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, 4*gib, 3, Selector{Pool: "usb", Removable: ptr(true)})},
			map[string][]string{"j1": {"needs 3 more drives: ", "1 busy with other tasks (n1/a)", "1 smaller than 4.0 GiB (4294967296 bytes) (n1/b)",
				"1 fixed, the order takes only removable ones (n1/c)", "1 refused by their node (n1/d)", "1 on a node not taking tasks (n2/a)"}}},
		{"drives taken by an older order now are busy", farm(node("n1", "usb", usbKey("a", 8*gib))),
			[]Job{orderJob("j0", 0, gib, 1, Selector{}), orderJob("j1", 1, gib, 1, Selector{})},
			map[string][]string{"j1": {"needs 1 more drive: 1 busy with other tasks (n1/a)"}}},
		{"order partly covered counts what is left", farm(node("n1", "usb", usbKey("a", 8*gib), written(usbKey("b", 8*gib), "t0"))),
			[]Job{withTasks(orderJob("j1", 0, gib, 4, Selector{}), task("t1", "n9/x", done))},
			map[string][]string{"j1": {"needs 2 more drives: 1 written since inserted (n1/b)"}}},
		{"an order's own drives are no reason it waits", farm(node("n1", "usb", busy(usbKey("a", 8*gib), "t1"), written(usbKey("b", 8*gib), "t0"),
			busy(usbKey("c", 8*gib), "t9"), usbKey("d", 8*gib))),
			[]Job{withTasks(orderJob("j1", 0, gib, 4, Selector{}), task("t1", "n1/a", writing))},
			map[string][]string{"j1": {"needs 2 more drives: 1 written since inserted (n1/b); a standing order takes only freshly inserted drives: pull and re-insert them; " +
				"1 busy with other tasks (n1/c)"}}},
		{"order with no drive on its nodes", farm(node("n1", "usb"), node("n2", "ssd", usbKey("a", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 1, Selector{Pool: "usb"})},
			map[string][]string{"j1": {`needs 1 more drive: no node with pool "usb" has a drive: insert one`}}},
		{"explicit drives each say what they do", farm(node("n1", "usb", busy(usbKey("a", 8*gib), "t7"), usbKey("b", 2*gib), refused(usbKey("c", 8*gib), "holds /"), usbKey("d", 8*gib)),
			nodeIn(draining, node("n2", "usb", usbKey("a", 8*gib)))),
			[]Job{explicitJob("j1", 0, 4*gib, "n1/a", "n1/b", "n1/c", "n1/d", "n1/zz", "n2/a", "n9/a")},
			map[string][]string{"j1": {"waits for 6 drives: ", "n1/a is busy with another task", "n1/b holds 2.0 GiB (2147483648 bytes), the image needs 4.0 GiB",
				"n1/c is refused by its node: holds /", "n1/zz is not attached: insert it", "n2/a is on node n2, which is draining", "n9/a is on no node the farm knows"}}},
		{"covered jobs do not wait", farm(node("n1", "usb", usbKey("a", 8*gib), usbKey("b", 8*gib))),
			[]Job{orderJob("j1", 0, gib, 1, Selector{}), explicitJob("j2", 1, gib, "n1/b"), withTasks(orderJob("j3", 2, gib, 1, Selector{}), task("t1", "n9/x", writing))},
			map[string][]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Waiting(tc.jobs, tc.farm, Place(tc.jobs, tc.farm))
			for id, why := range got {
				if _, ok := tc.want[id]; !ok {
					t.Errorf("Waiting()[%s] = %q, want no reason", id, why)
				}
			}
			for id, parts := range tc.want {
				for _, p := range parts {
					if !strings.Contains(got[id], p) {
						t.Errorf("Waiting()[%s] = %q, want it to contain %q", id, got[id], p)
					}
				}
			}
		})
	}
}

// TestWaitingLongListsStayShort checks that an order over a large farm
// names a few drives and counts the rest.
func TestWaitingLongListsStayShort(t *testing.T) {
	n := node("n1", "usb")
	for i := range 40 {
		n.Drives = append(n.Drives, written(usbKey(fmt.Sprintf("k%02d", i), 8*gib), "t"))
	}
	jobs := []Job{orderJob("j1", 0, gib, 1, Selector{})}
	why := Waiting(jobs, farm(n), nil)["j1"]
	if !strings.Contains(why, "40 written since inserted (n1/k00, n1/k01, n1/k02, n1/k03, n1/k04, n1/k05, n1/k06, n1/k07 and 32 more)") || len(why) > 300 {
		t.Errorf("Waiting() = %q (%d bytes), want 8 drives named and 32 counted", why, len(why))
	}
}

// BenchmarkWaiting runs Waiting at BenchmarkPlace's scale on a full farm,
// where every job waits: it runs after every Place.
// With own sizes, no two jobs share a selector key.
func BenchmarkWaiting(b *testing.B) {
	for _, ownSizes := range []bool{false, true} {
		b.Run(fmt.Sprintf("own-sizes=%v", ownSizes), func(b *testing.B) {
			jobs, f := benchFarm(200, 16, 1000, 10)
			for i := range jobs {
				if ownSizes {
					jobs[i].ImageSize = 12*gib + uint64(i)
				}
			}
			occupy(jobs, f, Place(jobs, f))
			for b.Loop() {
				Waiting(jobs, f, nil)
			}
		})
	}
}
