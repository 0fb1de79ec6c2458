package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/controller/core"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// deviceEpoch is the epoch of every device task: a device is fenced by its
// credential and by its record's task, not by a node epoch.
const deviceEpoch = 1

// placeDevice gives an enrolled device its task: the oldest open job that
// wants it, if the exact-model rule and the choice of disk allow; a job
// they refuse gets a FAILED task saying why (nothing written) and the next
// job is tried. It returns the assignment, or nil and why there is none.
func (c *deviceServer) placeDevice(ctx context.Context, dev *imagefarmv1.Device) (*imagefarmv1.TaskAssignment, string, error) {
	c.dev.placing.Lock() // one device at a time: an order's count is read, then taken
	defer c.dev.placing.Unlock()
	if err := c.endCutShort(ctx, dev); err != nil {
		return nil, "", err
	}
	jobs, err := c.openDeviceJobs(ctx)
	if err != nil {
		return nil, "", err
	}
	var refused []string
	for _, dj := range jobs {
		ok, diskSerial := dj.wants(dev)
		if !ok {
			continue
		}
		a, err := c.assignDevice(ctx, dj, dev, diskSerial)
		if errors.Is(err, errDeviceRefused) {
			refused = append(refused, fmt.Sprintf("job %s: %s", dj.job.GetId(), message(err)))
			continue
		}
		if err != nil || a != nil {
			return a, fmt.Sprintf("task %s of job %s", a.GetTaskId(), a.GetJobId()), err
		}
	}
	c.setDeviceTask(ctx, dev.GetId(), "")
	if len(refused) > 0 {
		return nil, "refused: " + strings.Join(refused, "; ") + ": it boots its local disk", nil
	}
	return nil, "no job wants it: it boots its local disk", nil
}

// endCutShort ends LOST the task a device had under way when it enrolled
// again: its deploy environment restarted mid-task.
func (c *deviceServer) endCutShort(ctx context.Context, dev *imagefarmv1.Device) error {
	if dev.GetTaskId() == "" {
		return nil
	}
	id := dev.GetTaskId()
	return c.core.LoseTask(ctx, core.JobOf(id), id, "the device enrolled again: its deploy environment restarted during the task")
}

// assignDevice creates dj's task on dev. A refusal (the exact-model rule,
// the choice of disk) is a FAILED task, with nothing assigned, and an
// errDeviceRefused.
func (c *deviceServer) assignDevice(ctx context.Context, dj deviceJob, dev *imagefarmv1.Device, diskSerial string) (*imagefarmv1.TaskAssignment, error) {
	job := dj.job
	m, err := c.imageOf(ctx, job)
	if err != nil {
		return nil, err
	}
	t := &imagefarmv1.Task{Id: core.NewTaskID(job.GetId()), JobId: job.GetId(), NodeId: deviceNode(dev.GetId()),
		SlotLabel: "device " + dev.GetSerial(), State: imagefarmv1.TaskState_TASK_STATE_ASSIGNED,
		Epoch: deviceEpoch, Attempt: uint32(len(dj.tasks) + 1), Drive: &imagefarmv1.DriveIdentity{}}
	reason := imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MODEL_MISMATCH
	err = dj.deviceModelRule(m.Models, dev)
	if err == nil {
		reason = imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY
		if err = c.firstArticleGuard(ctx, dj, dev); err != nil && !errors.Is(err, errDeviceRefused) {
			return nil, err
		}
	}
	if err == nil && job.GetOptions().GetResetSpec() != nil { // the policy or the device may have changed since the submit
		if reason, err = c.resetAllowed(ctx, dev); err != nil && !errors.Is(err, errDeviceRefused) {
			return nil, err
		}
	}
	if err == nil {
		reason = imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY
		var disk *imagefarmv1.Drive
		if disk, err = chooseDisk(dev, diskSerial, uint64(m.Size)); disk != nil {
			t.Drive = &imagefarmv1.DriveIdentity{Id: disk.GetId(), Serial: disk.GetSerial(), SizeBytes: disk.GetSizeBytes(), Model: disk.GetModel()}
		}
	}
	if err != nil {
		if rerr := c.core.RefuseTask(ctx, t, &imagefarmv1.Failure{Reason: reason, Message: message(err)}); rerr != nil {
			return nil, rerr
		}
		c.wake()
		return nil, err
	}
	if t, _, err = c.core.AssignDevice(ctx, t); t == nil || err != nil {
		return nil, err // nil, nil: the job ended or was canceled meanwhile
	}
	c.setDeviceTask(ctx, dev.GetId(), t.GetId())
	return &imagefarmv1.TaskAssignment{TaskId: t.GetId(), JobId: job.GetId(), NodeId: t.GetNodeId(), Epoch: deviceEpoch,
		Drive: t.GetDrive(), ManifestDigest: job.GetManifestDigest(), ImageRef: job.GetImageRef(), Options: job.GetOptions(),
		AssignTime: now(), Capture: job.GetCapture()}, nil
}

// imageOf is the manifest a device job writes; a capture job's is an
// empty one of no model, which the device's model and any disk take.
func (c *deviceServer) imageOf(ctx context.Context, job *imagefarmv1.Job) (*catalog.Manifest, error) {
	if isCaptureJob(job) {
		return &catalog.Manifest{}, nil
	}
	return c.cat.ManifestByDigest(ctx, job.GetManifestDigest())
}

// setDeviceTask records the task a device runs ("" for none).
func (c *deviceServer) setDeviceTask(ctx context.Context, id, taskID string) {
	_, err := c.updateDevice(ctx, id, func(d *imagefarmv1.Device) error {
		d.TaskId, d.State = taskID, imagefarmv1.DeviceState_DEVICE_STATE_IMAGING
		if taskID == "" {
			d.State = imagefarmv1.DeviceState_DEVICE_STATE_IDLE
		}
		return nil
	})
	if err != nil {
		c.log.Warn("record device task", "device_id", id, "task_id", taskID, "error", err)
	}
}
