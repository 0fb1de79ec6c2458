package scheduler

import (
	"fmt"
	"strings"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Builders for the tests' farms and jobs: short enough that a table row
// reads as the situation it sets up.

const gib = 1 << 30

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const (
	online   = imagefarmv1.NodeState_NODE_STATE_ONLINE
	lost     = imagefarmv1.NodeState_NODE_STATE_LOST
	draining = imagefarmv1.NodeState_NODE_STATE_DRAINING

	queued  = imagefarmv1.TaskState_TASK_STATE_QUEUED
	writing = imagefarmv1.TaskState_TASK_STATE_WRITING
	done    = imagefarmv1.TaskState_TASK_STATE_DONE
	failed  = imagefarmv1.TaskState_TASK_STATE_FAILED
	lostT   = imagefarmv1.TaskState_TASK_STATE_LOST
)

func node(id, pool string, drives ...Drive) Node {
	return Node{ID: id, Pool: pool, State: online, Epoch: 7, LastHeartbeat: t0, Drives: drives}
}

func nodeIn(state imagefarmv1.NodeState, n Node) Node {
	n.State = state
	return n
}

func labeled(n Node, kv ...string) Node {
	n.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

// usbKey is a removable drive whose slot sorts like its id.
func usbKey(id string, size uint64) Drive {
	return Drive{ID: id, Serial: "SN-" + id, Model: "Cruzer", Size: size, Removable: true, Slot: "usb-" + id, Inserted: t0}
}

// ssd is a fixed drive.
func ssd(id string, size uint64) Drive {
	d := usbKey(id, size)
	d.Removable, d.Model = false, "SSD 870"
	return d
}

func busy(d Drive, task string) Drive    { d.TaskID = task; return d }
func refused(d Drive, why string) Drive  { d.Refused = why; return d }
func written(d Drive, task string) Drive { d.LastTaskID = task; return d }
func inSlot(d Drive, slot string) Drive  { d.Slot = slot; return d }

func insertedAt(d Drive, at time.Time) Drive { d.Inserted = at; return d }

func farm(nodes ...Node) Farm { return Farm{Nodes: nodes} }

// explicitJob is a job for these "NODE/DRIVE" drives, created age minutes
// after t0.
func explicitJob(id string, age int, image uint64, refs ...string) Job {
	j := Job{ID: id, Created: t0.Add(time.Duration(age) * time.Minute), ImageSize: image}
	for _, r := range refs {
		node, drive, _ := strings.Cut(r, "/")
		j.Drives = append(j.Drives, DriveRef{node, drive})
	}
	return j
}

// orderJob is a standing order created age minutes after t0.
func orderJob(id string, age int, image uint64, count int, sel Selector) Job {
	return Job{ID: id, Created: t0.Add(time.Duration(age) * time.Minute), ImageSize: image, Selector: &sel, Count: count}
}

func withTasks(j Job, tasks ...Task) Job {
	j.Tasks = append(j.Tasks, tasks...)
	return j
}

// task is a task on "NODE/DRIVE" created at t0.
func task(id, ref string, state imagefarmv1.TaskState) Task {
	node, drive, _ := strings.Cut(ref, "/")
	return Task{ID: id, NodeID: node, DriveID: drive, State: state, Created: t0}
}

func ptr[T any](v T) *T { return &v }

// summary renders placements as "JOB>NODE/DRIVE", in order.
func summary(ps []Placement) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fmt.Sprintf("%s>%s", p.JobID, p.Ref())
	}
	return out
}
