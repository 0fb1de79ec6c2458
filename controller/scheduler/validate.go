package scheduler

import (
	"fmt"
	"strings"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// ValidateSubmit refuses, before a job is stored, what is malformed or can
// never be placed. It is deliberately not stricter: a standing order whose
// selector matches no drive today is accepted, because USB keys are inserted
// after the order is given. It refuses
//
//   - targets that are neither or both of drives and a selector, a count
//     with explicit drives, an empty, too long or repeating drive list;
//   - an explicit drive that is unknown, on an unknown, lost or draining
//     node, refused by the node's guards, smaller than the image, or busy;
//   - a count out of 1..MaxCount, a malformed selector, a selector naming an
//     unknown node or pool or matching no known node;
//   - a selector whose minimum size is below the image size when drives
//     match it today and every one of them is smaller than the image: its
//     author means those drives. A minimum of at least the image size says
//     "wait for big enough drives" and is accepted.
//
// Errors wrap the sentinels of this package.
func ValidateSubmit(j Job, f Farm) error {
	switch {
	case len(j.Drives) > 0 && j.Selector != nil:
		return fmt.Errorf("targets: give either drives or a selector with a count, not both: %w", ErrBadTargets)
	case len(j.Drives) > 0 && j.Count != 0:
		return fmt.Errorf("targets: a count goes with a selector; %d drives are listed, each is written once: %w", len(j.Drives), ErrBadTargets)
	case len(j.Drives) > 0:
		return validateExplicit(j, newIndex(f))
	case j.Selector != nil:
		return validateStanding(j, newIndex(f))
	}
	return fmt.Errorf("targets: no drives and no selector; name drives as NODE/DRIVE or give a selector with a count: %w", ErrBadTargets)
}

// index finds nodes by id and knows the farm's pools.
type index struct {
	nodes map[string]*Node
	ids   []string
	pools map[string]bool
}

func newIndex(f Farm) index {
	x := index{nodes: make(map[string]*Node, len(f.Nodes)), pools: map[string]bool{}}
	for i := range f.Nodes {
		n := &f.Nodes[i]
		if _, dup := x.nodes[n.ID]; !dup {
			x.ids = append(x.ids, n.ID)
		}
		x.nodes[n.ID] = n
		x.pools[n.Pool] = true
	}
	return x
}

func validateExplicit(j Job, x index) error {
	if len(j.Drives) > MaxCount {
		return fmt.Errorf("targets: %d drives listed, the limit is %d: %w", len(j.Drives), MaxCount, ErrBadTargets)
	}
	seen := make(map[DriveRef]bool, len(j.Drives))
	for _, ref := range j.Drives {
		if err := ref.check(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadDriveRef, err)
		}
		if seen[ref] {
			return fmt.Errorf("targets: drive %s is listed twice: %w", ref, ErrBadTargets)
		}
		seen[ref] = true
	}
	for _, ref := range j.Drives {
		if err := checkTarget(ref, j.ImageSize, x); err != nil {
			return err
		}
	}
	return nil
}

// checkTarget says why an explicit drive cannot be written now, if it cannot.
func checkTarget(ref DriveRef, image uint64, x index) error {
	n, ok := x.nodes[ref.NodeID]
	if !ok {
		return fmt.Errorf("drive %s: the farm has no node %q (nodes: %s): %w", ref, ref.NodeID, some(x.ids), ErrUnknownNode)
	}
	if n.State != imagefarmv1.NodeState_NODE_STATE_ONLINE {
		return fmt.Errorf("drive %s: node %s is %s, not online: %w", ref, n.ID, stateName(n.State), ErrNodeUnavailable)
	}
	d := findDrive(n, ref.DriveID)
	if d == nil {
		return fmt.Errorf("drive %s: node %s has no drive %q (its drives: %s): %w", ref, n.ID, ref.DriveID, driveIDs(n), ErrUnknownDrive)
	}
	switch {
	case d.Refused != "":
		return fmt.Errorf("drive %s: its node will not write it: %s: %w", ref, d.Refused, ErrDriveRefused)
	case d.Size < image:
		return fmt.Errorf("drive %s holds %s, the image needs %s: %w", ref, size(d.Size), size(image), ErrDriveTooSmall)
	case d.TaskID != "":
		return fmt.Errorf("drive %s is being written by task %s; wait for it or pick another drive: %w", ref, d.TaskID, ErrDriveBusy)
	}
	return nil
}

// findDrive is n's drive with this id, nil if none or if two drives share it.
func findDrive(n *Node, id string) *Drive {
	var found *Drive
	for i := range n.Drives {
		if n.Drives[i].ID == id {
			if found != nil {
				return nil
			}
			found = &n.Drives[i]
		}
	}
	return found
}

func driveIDs(n *Node) string {
	ids := make([]string, len(n.Drives))
	for i, d := range n.Drives {
		ids[i] = d.ID
	}
	return some(ids)
}

// stateName is "lost" for NODE_STATE_LOST.
func stateName(s imagefarmv1.NodeState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "NODE_STATE_"))
}
