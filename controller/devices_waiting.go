package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// maxWaitLookups bounds the device records one device list's waiting
// reason reads per placement pass, and maxWaitNamed the devices it names.
const (
	maxWaitLookups = 50
	maxWaitNamed   = 3
)

// deviceWaiting says why device job j, whose tasks are tasks, waits, the
// way scheduler.Waiting does for drive jobs: "" when every device it needs
// is taken. An order waits for devices of its model to netboot; a list
// names the devices it still needs and when each was last seen. Devices
// are found by serial through the index, never by reading every record.
func deviceWaiting(ctx context.Context, recs *devices.Store, j *imagefarmv1.Job, tasks []scheduler.Task) string {
	if o := j.GetTargets().GetDeviceOrder(); o != nil {
		held := 0
		for _, t := range tasks {
			if t.State == imagefarmv1.TaskState_TASK_STATE_DONE || !t.State.Final() {
				held++
			}
		}
		if left := int(o.GetCount()) - held; left > 0 {
			return fmt.Sprintf("waiting for %s of model %q to netboot (%d of %d taken)", plural(left, "device"), o.GetModel(), held, o.GetCount())
		}
		return ""
	}
	holds := map[string]bool{} // node ids of the devices the job holds
	for _, t := range tasks {
		if t.State != imagefarmv1.TaskState_TASK_STATE_LOST {
			holds[t.NodeID] = true
		}
	}
	targets := j.GetTargets().GetDevices().GetDevices()
	missing := len(targets) - len(holds)
	if missing <= 0 {
		return ""
	}
	var named []string
	for i, tg := range targets {
		if len(named) == maxWaitNamed || i == maxWaitLookups {
			break
		}
		if why := targetWaiting(ctx, recs, tg.GetSerial(), holds); why != "" {
			named = append(named, why)
		}
	}
	if more := missing - len(named); more > 0 {
		named = append(named, fmt.Sprintf("%d more", more))
	}
	return "waiting for " + strings.Join(named, "; ")
}

// targetWaiting says why the device with serial is not yet written by a
// job holding the devices holds: "" when it holds it.
func targetWaiting(ctx context.Context, recs *devices.Store, serial string, holds map[string]bool) string {
	found, err := recs.BySerial(ctx, serial)
	if err != nil {
		return fmt.Sprintf("device %s (its record cannot be read: %v)", serial, err)
	}
	if len(found) == 0 {
		return fmt.Sprintf("device %s to netboot (never seen)", serial)
	}
	var last time.Time
	for _, d := range found {
		if holds[deviceNode(d.GetId())] {
			return ""
		}
		if t := d.GetLastSeenTime().AsTime(); t.After(last) {
			last = t
		}
	}
	return fmt.Sprintf("device %s to netboot (not seen since %s)", serial, last.UTC().Format(time.RFC3339))
}

func plural(n int, what string) string {
	if n == 1 {
		return "a " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
