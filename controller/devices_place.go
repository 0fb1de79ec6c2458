package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// errDeviceRefused: a device job asks for what the rules of writing a
// device forbid (the exact-model rule, the choice of disk). Failed
// precondition; the message names what was refused and why.
var errDeviceRefused = errors.New("controller: refused for the device")

// isDeviceJob reports whether j writes netbooted devices.
func isDeviceJob(j *imagefarmv1.Job) bool { return core.IsDeviceJob(j) }

// deviceJob is an open job that writes devices, with its tasks; a
// rollout's wave also has its rollout and model (rollout_place.go).
type deviceJob struct {
	job   *imagefarmv1.Job
	tasks []*imagefarmv1.Task
	roll  *imagefarmv1.Rollout
	model *imagefarmv1.Model
	// inFlight counts a rollout wave's tasks under way by their device's
	// pool.
	inFlight map[string]int
}

// openDeviceJobs are the open device jobs, oldest first.
func (c *deviceServer) openDeviceJobs(ctx context.Context) ([]deviceJob, error) {
	var out []deviceJob
	for token := ""; ; {
		jobs, next, err := c.st.ListJobs(ctx, openJobsFilter(token))
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			if !isDeviceJob(j) {
				continue
			}
			tasks, err := c.st.ListTasks(ctx, j.GetId())
			if err != nil {
				return nil, err
			}
			dj := deviceJob{job: j, tasks: tasks}
			if err := c.withRollout(ctx, &dj); err != nil {
				return nil, err
			}
			out = append(out, dj)
		}
		if token = next; token == "" {
			break
		}
	}
	slices.SortFunc(out, func(a, b deviceJob) int {
		return cmp.Or(a.job.GetCreateTime().AsTime().Compare(b.job.GetCreateTime().AsTime()), cmp.Compare(a.job.GetId(), b.job.GetId()))
	})
	return out, nil
}

// counts reports whether t holds its device for its job (core.HoldsDevice).
func counts(t *imagefarmv1.Task) bool { return core.HoldsDevice(t) }

// wants reports whether the job takes device d now, and which disk the job
// names for it ("" to choose).
func (dj deviceJob) wants(d *imagefarmv1.Device) (bool, string) {
	node := deviceNode(d.GetId())
	if slices.ContainsFunc(dj.tasks, func(t *imagefarmv1.Task) bool { return t.GetNodeId() == node && counts(t) }) {
		return false, "" // one task per device per job
	}
	if l := dj.job.GetTargets().GetDevices(); l != nil {
		for _, tg := range l.GetDevices() {
			if tg.GetSerial() == d.GetSerial() {
				return true, tg.GetDiskSerial()
			}
		}
		return false, ""
	}
	o := dj.job.GetTargets().GetDeviceOrder()
	if o.GetRolloutId() != "" {
		return dj.rolloutWants(d) && dj.holding() < int(o.GetCount()), ""
	}
	return d.GetModel() == o.GetModel() && dj.holding() < int(o.GetCount()), ""
}

// room reports whether the job may still take a device the farm does not
// know yet (it learns who it is only when it enrolls).
func (dj deviceJob) room() bool {
	if l := dj.job.GetTargets().GetDevices(); l != nil {
		return dj.holdingTargets() < len(l.GetDevices())
	}
	o := dj.job.GetTargets().GetDeviceOrder()
	return dj.holding() < int(o.GetCount()) && (o.GetRolloutId() == "" || dj.rolloutTaking(""))
}

// holding counts the tasks done or under way, which count towards a
// device order.
func (dj deviceJob) holding() int {
	n := 0
	for _, t := range dj.tasks {
		if t.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE || !t.GetState().Final() {
			n++
		}
	}
	return n
}

// holdingTargets counts the tasks that hold a target of a device list.
func (dj deviceJob) holdingTargets() int {
	return len(slices.DeleteFunc(slices.Clone(dj.tasks), func(t *imagefarmv1.Task) bool { return !counts(t) }))
}

// checkDeviceJob refuses at submit what a device job could never do: a
// malformed target, a serial several devices share, an image whose models
// exclude the device's (or the order's) model, a device whose disks leave
// no single choice. A device the farm does not know yet is accepted: the
// job waits for it to netboot, and the same checks run when it enrolls.
func (c *deviceServer) checkDeviceJob(ctx context.Context, job *imagefarmv1.Job) error {
	if isCaptureJob(job) {
		return c.checkCapture(ctx, job)
	}
	m, err := c.cat.ManifestByDigest(ctx, job.GetManifestDigest())
	if err != nil {
		return err
	}
	if o := job.GetTargets().GetDeviceOrder(); o != nil {
		if o.GetRolloutId() != "" {
			return fmt.Errorf("device order: rollout_id is the controller's, for a rollout's waves: start a rollout with imagefarm rollout start MODEL: %w",
				scheduler.ErrBadTargets)
		}
		if err := cmp.Or(checkModel(o.GetModel()), checkDeviceCount(o.GetCount())); err != nil {
			return err
		}
		return modelRule(job.GetImageRef(), m.Models, "the order's model", o.GetModel())
	}
	targets := job.GetTargets().GetDevices().GetDevices()
	if len(targets) == 0 || len(targets) > scheduler.MaxCount {
		return fmt.Errorf("targets: %d devices, want 1 to %d: %w", len(targets), scheduler.MaxCount, scheduler.ErrBadTargets)
	}
	seen := map[string]bool{}
	for _, tg := range targets {
		if err := checkDeviceTarget(tg, seen); err != nil {
			return err
		}
		known, err := c.dev.records.Find(ctx, tg.GetSerial())
		known = slices.DeleteFunc(known, func(d *imagefarmv1.Device) bool { return d.GetSerial() != tg.GetSerial() })
		switch {
		case err != nil:
			return err
		case len(known) > 1:
			return fmt.Errorf("serial %q: %d devices have it (%s): the firmware reports a placeholder; such devices cannot be targeted by serial: %w",
				tg.GetSerial(), len(known), deviceIDs(known), errDeviceRefused)
		case len(known) == 1:
			d := known[0]
			if err := modelRule(job.GetImageRef(), m.Models, "device "+d.GetSerial(), d.GetModel()); err != nil {
				return err
			}
			if len(d.GetDisks()) > 0 {
				if _, err := chooseDisk(d, tg.GetDiskSerial(), uint64(m.Size)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkDeviceTarget(tg *imagefarmv1.DeviceTarget, seen map[string]bool) error {
	if tg.GetSerial() == "" {
		return fmt.Errorf("targets: a device without a serial: give each device's SMBIOS serial (--device SERIAL): %w", scheduler.ErrBadTargets)
	}
	if err := cmp.Or(devices.CheckText("device serial", tg.GetSerial()), devices.CheckText("disk serial", tg.GetDiskSerial())); err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	if seen[tg.GetSerial()] {
		return fmt.Errorf("targets: device %q named twice: %w", tg.GetSerial(), scheduler.ErrBadTargets)
	}
	seen[tg.GetSerial()] = true
	return nil
}

func checkModel(model string) error {
	if model == "" {
		return fmt.Errorf("device order: no model: give the exact SMBIOS product name (--model \"HP EliteBook 840 G7 Notebook PC\"): %w", scheduler.ErrBadTargets)
	}
	return devices.CheckText("model", model)
}

func checkDeviceCount(n uint32) error {
	if n < 1 || n > scheduler.MaxCount {
		return fmt.Errorf("device order: count %d: want 1 to %d: %w", n, scheduler.MaxCount, scheduler.ErrBadCount)
	}
	return nil
}

// modelRule is the exact-model rule: an image tagged with models is never
// written to a device of another model. what names the device (or order)
// whose model is model.
func modelRule(ref string, models []string, what, model string) error {
	if len(models) == 0 || slices.Contains(models, model) {
		return nil
	}
	return fmt.Errorf("%s is for the models %s only; %s is model %q: the exact-model rule refuses it, nothing is written; "+
		"write an image for %q or a universal one: %w", ref, quoteAll(models), what, model, model, errDeviceRefused)
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func deviceIDs(ds []*imagefarmv1.Device) string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.GetId()
	}
	return strings.Join(ids, ", ")
}

// internal reports whether a disk is one the deploy environment may
// write: fixed, and not on USB (nor a loop device, which is no disk).
func internal(d *imagefarmv1.Drive) bool {
	return !d.GetRemovable() && d.GetTransport() != imagefarmv1.Transport_TRANSPORT_USB &&
		d.GetTransport() != imagefarmv1.Transport_TRANSPORT_LOOP
}

// chooseDisk is the disk of dev to write an image of size bytes to: the
// one with diskSerial when the job names one, else the one internal disk
// the device has. Anything else is refused naming the candidates: the
// farm never guesses (never "the largest").
func chooseDisk(dev *imagefarmv1.Device, diskSerial string, size uint64) (*imagefarmv1.Drive, error) {
	name := fmt.Sprintf("device %s (%s)", dev.GetSerial(), dev.GetModel())
	var pick *imagefarmv1.Drive
	if diskSerial != "" {
		i := slices.IndexFunc(dev.GetDisks(), func(d *imagefarmv1.Drive) bool { return d.GetSerial() == diskSerial })
		if i < 0 {
			return nil, fmt.Errorf("%s has no disk with serial %q; it has %s: %w", name, diskSerial, diskList(dev.GetDisks()), errDeviceRefused)
		}
		if pick = dev.GetDisks()[i]; !internal(pick) {
			return nil, fmt.Errorf("%s: disk %s is removable or USB: the deploy environment writes only internal disks: %w",
				name, diskText(pick), errDeviceRefused)
		}
	} else {
		fixed := slices.DeleteFunc(slices.Clone(dev.GetDisks()), func(d *imagefarmv1.Drive) bool { return !internal(d) })
		switch len(fixed) {
		case 0:
			return nil, fmt.Errorf("%s has no internal disk (fixed, not USB); it reports %s: the deploy environment never writes a removable or USB disk: %w",
				name, diskList(dev.GetDisks()), errDeviceRefused)
		case 1:
			pick = fixed[0]
		default:
			return nil, fmt.Errorf("%s has %d internal disks, %s: name the one to write by its serial (--disk SERIAL): %w",
				name, len(fixed), diskList(fixed), errDeviceRefused)
		}
	}
	if pick.GetSizeBytes() < size {
		return nil, fmt.Errorf("%s: disk %s is smaller than the image (%s): %w", name, diskText(pick), humanize.IBytes(size), errDeviceRefused)
	}
	return pick, nil
}

func diskText(d *imagefarmv1.Drive) string {
	kind := strings.TrimPrefix(d.GetTransport().String(), "TRANSPORT_")
	if d.GetRemovable() {
		kind += ", removable"
	}
	return fmt.Sprintf("%s (%s, %s, serial %q)", d.GetId(), kind, humanize.IBytes(d.GetSizeBytes()), d.GetSerial())
}

func diskList(ds []*imagefarmv1.Drive) string {
	if len(ds) == 0 {
		return "no disk at all"
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = diskText(d)
	}
	return strings.Join(out, ", ")
}
