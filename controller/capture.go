package controller

import (
	"context"
	"fmt"
	"slices"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// A capture job reads one device's internal disk into the catalog as a
// new version. It is a device job like a write (targets: the one device,
// placed when the device enrolls, settled by its one task), whose job
// record has a CaptureSpec and no manifest digest; the device uploads its
// disk through DeviceService.Capture (devices_capture.go), and the
// controller stores it.

// isCaptureJob reports whether j captures a device's disk.
func isCaptureJob(j *imagefarmv1.Job) bool { return j.GetCapture() != nil }

// SubmitCapture implements ImageFarmService.SubmitCapture.
func (a *apiServer) SubmitCapture(ctx context.Context, req *imagefarmv1.SubmitCaptureRequest) (*imagefarmv1.SubmitCaptureResponse, error) {
	ref, err := parseTagRef(req.GetImageRef())
	if err != nil {
		return nil, err
	}
	if err := checkAfter(req.GetAfter()); err != nil {
		return nil, err
	}
	if err := ident.Labels(req.GetLabels()); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	dev, err := a.dev.captureDevice(ctx, req.GetDeviceSerial())
	if err != nil {
		return nil, err
	}
	job := &imagefarmv1.Job{Id: core.NewJobID(""), ImageRef: ref.String(), State: imagefarmv1.JobState_JOB_STATE_PENDING,
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{Devices: []*imagefarmv1.DeviceTarget{
			{Serial: dev.GetSerial(), DiskSerial: req.GetDiskSerial()}}}}},
		Options: &imagefarmv1.JobOptions{AfterWrite: req.GetAfter()}, Labels: req.GetLabels(),
		Capture: &imagefarmv1.CaptureSpec{Name: ref.Name, Version: ref.Tag, Model: dev.GetModel()}}
	got, err := a.createJob(ctx, "", job)
	if err != nil {
		return nil, err
	}
	a.log.Info("capture submitted", "job_id", got.GetId(), "image", got.GetImageRef(), "device", dev.GetSerial())
	return &imagefarmv1.SubmitCaptureResponse{Job: got}, nil
}

// captureDevice is the one device with serial, which a capture needs a
// record of: its model tags the capture, and its disks must leave one
// choice.
func (c *deviceServer) captureDevice(ctx context.Context, serial string) (*imagefarmv1.Device, error) {
	if err := checkDeviceTarget(&imagefarmv1.DeviceTarget{Serial: serial}, map[string]bool{}); err != nil {
		return nil, err
	}
	found, err := c.dev.records.Find(ctx, serial)
	if err != nil {
		return nil, err
	}
	found = slices.DeleteFunc(found, func(d *imagefarmv1.Device) bool { return d.GetSerial() != serial })
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no device has the serial %q: a capture needs the device's record, made when it first netboots into the farm "+
			"(boot it from the network once, then see it in imagefarm devices ls): %w", serial, devices.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("serial %q: %d devices have it (%s): the firmware reports a placeholder; such devices cannot be captured by serial: %w",
		serial, len(found), deviceIDs(found), errDeviceRefused)
}

// checkCapture refuses at submit a capture that could never be stored:
// a version that exists, or is being captured by another open job; a
// device without a record or whose disks leave no single choice.
func (c *deviceServer) checkCapture(ctx context.Context, job *imagefarmv1.Job) error {
	spec := job.GetCapture()
	if err := c.cat.CheckNewVersion(ctx, spec.GetName(), spec.GetVersion(), nil); err != nil {
		return err
	}
	open, err := c.openDeviceJobs(ctx)
	if err != nil {
		return err
	}
	for _, dj := range open {
		if dj.job.GetImageRef() == job.GetImageRef() && isCaptureJob(dj.job) {
			return fmt.Errorf("job %s already captures %s: cancel it, or capture another version: %w", dj.job.GetId(), job.GetImageRef(), errDeviceRefused)
		}
	}
	tg := job.GetTargets().GetDevices().GetDevices()[0]
	if err := devices.CheckText("disk serial", tg.GetDiskSerial()); err != nil {
		return err
	}
	dev, err := c.captureDevice(ctx, tg.GetSerial())
	if err != nil {
		return err
	}
	_, err = chooseDisk(dev, tg.GetDiskSerial(), 0)
	return err
}
