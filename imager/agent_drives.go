package imager

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// hello is the first message of a status stream: who the node is, every
// drive it sees now, and the task runs it holds.
func (a *Agent) hello() (*imagefarmv1.ConnectRequest, error) {
	drives, err := drive.Discover(a.cfg.Drives)
	if err != nil {
		return nil, err
	}
	busy := a.busyDrives()
	h := &imagefarmv1.Hello{
		NodeId:     a.cfg.NodeID,
		InstanceId: a.instanceID,
		Pool:       a.cfg.Pool,
		Labels:     a.cfg.Labels,
		Version:    a.cfg.Version,
		HeldTasks:  a.held(),
	}
	for _, d := range drives {
		h.Drives = append(h.Drives, a.protoDrive(d, busy[d.ID]))
	}
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: h}}, nil
}

// ProtoDrive describes a discovered drive for the controller, with what
// the node's static guards say of it: a drive they refuse is
// DRIVE_STATE_REFUSED with the reason of the first guard that refused it.
// nodeID is the node the drive is attached to.
func ProtoDrive(nodeID string, d drive.Drive, cfg drive.Config) *imagefarmv1.Drive {
	pd := &imagefarmv1.Drive{
		Id:                d.ID,
		NodeId:            nodeID,
		Path:              d.Path,
		SizeBytes:         uint64(max(d.Size, 0)),
		LogicalBlockSize:  uint32(max(d.LogicalBlockSize, 0)),
		PhysicalBlockSize: uint32(max(d.PhysicalBlockSize, 0)),
		Vendor:            d.Vendor,
		Model:             d.Model,
		Serial:            d.Serial,
		Wwn:               d.WWN,
		Removable:         d.Removable,
		Transport:         transports[d.Transport],
		Slot:              d.Slot,
		SlotLabel:         d.SlotLabel,
		State:             imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE,
	}
	verdicts := drive.Check(d, 0, cfg)
	if err := drive.Refusal(verdicts); err != nil {
		pd.State = imagefarmv1.DriveState_DRIVE_STATE_REFUSED
		pd.Refusal = &imagefarmv1.Failure{Reason: guardReason(Plan{Drive: d, Verdicts: verdicts}), Message: err.Error()}
	}
	return pd
}

// transports maps drive transports to the proto's; the ones it lacks
// (virtio, unknown) are TRANSPORT_UNSPECIFIED.
var transports = map[drive.Transport]imagefarmv1.Transport{
	drive.TransportUSB:     imagefarmv1.Transport_TRANSPORT_USB,
	drive.TransportSATA:    imagefarmv1.Transport_TRANSPORT_SATA,
	drive.TransportSCSI:    imagefarmv1.Transport_TRANSPORT_SCSI,
	drive.TransportNVMe:    imagefarmv1.Transport_TRANSPORT_NVME,
	drive.TransportMMC:     imagefarmv1.Transport_TRANSPORT_MMC,
	drive.TransportLoop:    imagefarmv1.Transport_TRANSPORT_LOOP,
	drive.TransportVirtual: imagefarmv1.Transport_TRANSPORT_VIRTUAL,
}

// protoDrive is ProtoDrive for this node, BUSY with taskID when a run of
// this agent is writing it.
func (a *Agent) protoDrive(d drive.Drive, taskID string) *imagefarmv1.Drive {
	pd := ProtoDrive(a.cfg.NodeID, d, a.cfg.Drives)
	if taskID != "" && pd.State == imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE {
		pd.State, pd.TaskId = imagefarmv1.DriveState_DRIVE_STATE_BUSY, taskID
	}
	return pd
}

// watchDrives reports drives as they come and go until ctx ends. Watch
// stops at a failed look (sysfs or the virtual drive folder unreadable);
// it is started again after a pause, and reports every drive once more.
func (a *Agent) watchDrives(ctx context.Context) error {
	pause := wait.Backoff{Min: reconnectMin, Max: reconnectMax}
	for {
		err := drive.Watch(ctx, a.cfg.Drives, 0, a.driveEvent)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("drive watch", "error", err)
		if !pause.Wait(ctx) {
			return nil
		}
	}
}

// driveEvent queues DriveInserted or DriveRemoved for the controller.
func (a *Agent) driveEvent(ev drive.Event) {
	a.log.Info("drive "+string(ev.Kind), "drive", ev.Drive.ID, "path", ev.Drive.Path, "size", ev.Drive.Size)
	m := &imagefarmv1.ConnectRequest{}
	switch ev.Kind {
	case drive.Inserted:
		pd := a.protoDrive(ev.Drive, a.busyDrives()[ev.Drive.ID])
		pd.InsertTime = timestamppb.New(time.Now())
		m.Body = &imagefarmv1.ConnectRequest_DriveInserted{DriveInserted: &imagefarmv1.DriveInserted{Drive: pd}}
	case drive.Removed:
		m.Body = &imagefarmv1.ConnectRequest_DriveRemoved{DriveRemoved: &imagefarmv1.DriveRemoved{DriveId: ev.Drive.ID}}
	default:
		return
	}
	a.send(m)
}
