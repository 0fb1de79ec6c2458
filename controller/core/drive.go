package core

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Drive states, short, for the table.
const (
	driveNone      = imagefarmv1.DriveState_DRIVE_STATE_UNSPECIFIED
	driveAvailable = imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE
	driveBusy      = imagefarmv1.DriveState_DRIVE_STATE_BUSY
	driveRefused   = imagefarmv1.DriveState_DRIVE_STATE_REFUSED
)

// A drive's state is partly its imager's report (AVAILABLE, or REFUSED by
// the node's guards, at any time) and partly the controller's claim (BUSY
// while a task holds it). Each writer has its table, so that the
// controller's claim and release never undo what the guards said: the
// imager says REFUSED only when it reports the drive (Hello, insertion),
// not again when a task ends, so a release that made a refused drive
// AVAILABLE would offer it to placements its node refuses, each of which
// fails, until the node reconnects.
//
// driveReports is what an imager's report (PutDrive) may do:
//
//	(none)    → AVAILABLE, REFUSED, BUSY  its imager reports it (BUSY: the
//	                                      imager is writing it already)
//	any       → REFUSED                   its guards refuse it now
//	any       → AVAILABLE, BUSY           its guards pass (BUSY: a task
//	                                      holds it)
//
// Each state is written again as it is when the imager re-reports the
// drive. OFFLINE is in the API for the drives of a lost node; this
// controller keeps them as last reported, so no move leads to it. A pulled
// drive's record is deleted (RemoveDrive), not moved.
var driveReports = machine[imagefarmv1.DriveState]{entity: "drive", moves: map[imagefarmv1.DriveState][]imagefarmv1.DriveState{
	driveNone:      {driveAvailable, driveBusy, driveRefused},
	driveAvailable: {driveAvailable, driveBusy, driveRefused},
	driveBusy:      {driveBusy, driveAvailable, driveRefused},
	driveRefused:   {driveRefused, driveAvailable, driveBusy},
}}

// driveClaims is what the controller's claim (Assign) and release (a task
// ended) may do to a stored drive:
//
//	AVAILABLE → BUSY       a task claims it
//	BUSY      → BUSY       its task claims it again
//	BUSY      → AVAILABLE  its task ended
//	REFUSED   → REFUSED    its task ended; the drive stays as its guards
//	                       said, until its imager reports it again
//
// A REFUSED drive is never claimed: its node would refuse the task.
var driveClaims = machine[imagefarmv1.DriveState]{entity: "drive", moves: map[imagefarmv1.DriveState][]imagefarmv1.DriveState{
	driveAvailable: {driveBusy},
	driveBusy:      {driveBusy, driveAvailable},
	driveRefused:   {driveRefused},
}}

// Reportable reports whether an imager may report a drive in state s: a
// state a drive record can be created in.
func Reportable(s imagefarmv1.DriveState) bool { return driveReports.Legal(driveNone, s) }

// claim gives a drive to a task if it has none, still holds the medium
// the placement was made for (a key swapped meanwhile is left for the next
// placement, which sees the new key) and its node does not refuse it now.
func (c *Core) claim(ctx context.Context, nodeID string, planned scheduler.DriveIdentity, taskID string) error {
	_, err := c.updateDrive(ctx, driveClaims, nodeID, planned.ID, false, func(d *imagefarmv1.Drive) error {
		if d.TaskId != "" && d.TaskId != taskID {
			return fmt.Errorf("%w: %s/%s has %s", ErrClaimed, nodeID, planned.ID, d.TaskId)
		}
		if d.Serial != planned.Serial || d.SizeBytes != planned.Size {
			return fmt.Errorf("%w: %s/%s holds another medium now", ErrClaimed, nodeID, planned.ID)
		}
		if d.State == driveRefused {
			return fmt.Errorf("%w: %s/%s is refused by its node now", ErrClaimed, nodeID, planned.ID)
		}
		d.TaskId, d.State = taskID, driveBusy
		return nil
	})
	switch {
	case errors.Is(err, state.ErrNotFound):
		return fmt.Errorf("%w: %s/%s was pulled", ErrClaimed, nodeID, planned.ID)
	case errors.Is(err, ErrIllegalMove):
		return fmt.Errorf("%w: %w", ErrClaimed, err)
	}
	return err
}

// errNotHeld: the drive a task releases is not claimed by it (any more).
var errNotHeld = errors.New("core: drive not held by the task")

// Release frees a drive claimed by taskID, recording it as its last task:
// a BUSY drive becomes AVAILABLE, one its guards refused meanwhile stays
// REFUSED (driveClaims). A drive pulled meanwhile has nothing to free. Any
// other failure (NATS away) is returned, and logged: a claim left behind
// would keep the drive busy for good, so callers that can be asked again
// (a result the imager re-sends) must fail and be.
func (c *Core) Release(ctx context.Context, nodeID, driveID, taskID string) error {
	_, err := c.updateDrive(ctx, driveClaims, nodeID, driveID, false, func(d *imagefarmv1.Drive) error {
		if d.TaskId != taskID {
			return errNotHeld
		}
		d.TaskId, d.LastTaskId = "", taskID
		if d.State == driveBusy {
			d.State = driveAvailable
		}
		return nil
	})
	if errors.Is(err, state.ErrNotFound) || errors.Is(err, errNotHeld) {
		return nil
	}
	if err != nil {
		c.log.Warn("release drive", "node_id", nodeID, "drive", driveID, "task_id", taskID, "error", err)
	}
	return err
}

// PutDrive stores what an imager reports of a drive, keeping what only the
// controller knows (its task, its last task, when it was inserted). A
// reported state the table refuses (none, OFFLINE, unknown) is a
// *MoveError and stores nothing.
func (c *Core) PutDrive(ctx context.Context, nodeID string, d *imagefarmv1.Drive) error {
	_, err := c.updateDrive(ctx, driveReports, nodeID, d.GetId(), true, func(cur *imagefarmv1.Drive) error {
		last, inserted, task := cur.LastTaskId, cur.InsertTime, cur.TaskId
		if cur.Serial != d.GetSerial() || cur.SizeBytes != d.GetSizeBytes() {
			last, inserted = "", timestamppb.Now() // another medium in the slot
		}
		proto.Reset(cur)
		proto.Merge(cur, d)
		cur.NodeId, cur.LastTaskId, cur.InsertTime, cur.TaskId = nodeID, last, inserted, task
		if task != "" && cur.State != driveRefused {
			cur.State = driveBusy
		}
		if cur.InsertTime == nil {
			cur.InsertTime = timestamppb.Now()
		}
		return nil
	})
	return err
}

// RemoveDrive forgets a drive its imager no longer has; forgetting one that
// is not stored is not an error.
func (c *Core) RemoveDrive(ctx context.Context, nodeID, driveID string) error {
	err := c.st.DeleteDrive(ctx, nodeID, driveID)
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	return err
}

// SyncDrives makes the stored drives of a node its inventory.
func (c *Core) SyncDrives(ctx context.Context, nodeID string, drives []*imagefarmv1.Drive) error {
	have, err := c.st.ListDrives(ctx, nodeID)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, d := range drives {
		keep[d.GetId()] = true
		if err := c.PutDrive(ctx, nodeID, d); err != nil {
			return err
		}
	}
	for _, d := range have {
		if !keep[d.GetId()] {
			if err := c.RemoveDrive(ctx, nodeID, d.GetId()); err != nil {
				return err
			}
		}
	}
	return nil
}
