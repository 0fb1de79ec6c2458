package scheduler

import (
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Farm is the scheduler's view of the farm. It holds every node the
// controller knows, lost ones included, so that a submit can tell a node
// that does not exist from one that is only away.
type Farm struct {
	Nodes []Node
}

// Node is an imager host and its drives as the controller last knew them.
type Node struct {
	ID     string
	Pool   string
	Labels map[string]string
	// State says whether the node takes new tasks; only NODE_STATE_ONLINE
	// does. The zero value takes none, so a half-filled Node never gets work.
	State imagefarmv1.NodeState
	// Epoch is the node's current fencing epoch; placements carry it so
	// the node can be told to stop work planned before it was lost.
	Epoch         uint64
	LastHeartbeat time.Time
	Drives        []Drive
}

// Drive is one drive attached to a node.
type Drive struct {
	ID        string
	Serial    string
	Model     string
	Size      uint64 // bytes
	Removable bool
	Slot      string // /dev/disk/by-path name of the port; orders drives on a node
	SlotLabel string
	// Inserted is when the node first saw the drive since it was last
	// inserted. A job's task on this drive created before then was for an
	// earlier insertion (another key in the same slot, for keys named by
	// slot), so it does not stop the job from taking the drive again.
	Inserted time.Time
	// TaskID is the task using the drive, "" when free. The controller sets
	// it from its own task records too, not only from node reports, so a
	// drive is busy from the moment it is planned.
	TaskID string
	// LastTaskID is the last task that reached a final state on the drive
	// (LOST included) since it was inserted, "" if none. Standing orders
	// leave such a drive alone: written or half-written, it waits for the
	// technician to pull it.
	LastTaskID string
	// Refused is why the node's guards refuse the drive ("holds the root
	// file system"); "" when they do not. A refused drive is never placed.
	Refused string
	// Virtual says the drive is a file standing in for one (the dev farm),
	// which is re-inserted with imagefarm dev reinsert, not by hand.
	Virtual bool
}

// DriveRef names a drive across the farm, written "NODE/DRIVE".
type DriveRef struct {
	NodeID  string
	DriveID string
}

func (r DriveRef) String() string { return r.NodeID + "/" + r.DriveID }

// Job is a job that is not final yet, as far as placement cares. Exactly one
// of Drives and Selector is set.
type Job struct {
	ID        string
	Created   time.Time // orders jobs: the oldest is served first
	ImageSize uint64    // bytes of the manifest the job writes
	// Drives are the explicit targets: each gets exactly one task, ever.
	Drives []DriveRef
	// Selector and Count make a standing order: matching fresh drives are
	// taken until Count tasks are DONE or under way.
	Selector *Selector
	Count    int
	// Tasks are all the job's tasks so far, final ones included.
	Tasks []Task
}

// Selector chooses drives: every set field must match.
type Selector struct {
	Pool      string            // node pool; "" matches any
	Labels    map[string]string // node labels, each with exactly this value
	NodeIDs   []string          // when not empty, only these nodes
	MinSize   uint64            // bytes; 0 means none, the image size always applies
	Removable *bool             // when set, only drives with this flag
}

// Task is one of a job's tasks.
type Task struct {
	ID      string
	NodeID  string
	DriveID string
	State   imagefarmv1.TaskState
	Created time.Time
}

// Placement is a task to create: the job's image goes to this drive.
type Placement struct {
	JobID  string
	NodeID string
	// Epoch is the node's fencing epoch at planning time; the assignment
	// carries it.
	Epoch     uint64
	Drive     DriveIdentity
	Slot      string
	SlotLabel string
}

// DriveIdentity is what a task was planned for; the imager re-reads it just
// before opening the drive and refuses to write if it changed.
type DriveIdentity struct {
	ID     string
	Serial string
	Model  string
	Size   uint64
}

// Ref is the drive the placement is for.
func (p Placement) Ref() DriveRef { return DriveRef{p.NodeID, p.Drive.ID} }

// active reports whether a task in state s holds its drive: it has been
// planned and has not reached a final state.
func active(s imagefarmv1.TaskState) bool {
	return s != imagefarmv1.TaskState_TASK_STATE_UNSPECIFIED && !s.Final()
}

// holding counts the tasks that count towards a standing order: done, or
// under way and so expected to be done. Failed, canceled and lost ones do
// not: the order takes another drive in their place.
func (j *Job) holding() int {
	n := 0
	for _, t := range j.Tasks {
		if t.State == imagefarmv1.TaskState_TASK_STATE_DONE || active(t.State) {
			n++
		}
	}
	return n
}

// ref is the drive t was planned for.
func (t Task) ref() DriveRef { return DriveRef{t.NodeID, t.DriveID} }
