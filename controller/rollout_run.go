package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// errStale: a rollout changed between the loop's read and its write; the
// next round reads it again.
var errStale = errors.New("controller: rollout changed meanwhile")

// Run runs the rollouts until ctx ends: each round reads every open
// rollout, the tasks of its job and its devices' records, and moves it on.
// All it knows is in the records, so a restarted controller goes on where
// the last one was.
func (f *fleetServer) Run(ctx context.Context) error {
	t := time.NewTicker(f.tick)
	defer t.Stop()
	lastChannels := time.Time{}
	for {
		channels := f.channelsDue.Swap(false) || time.Since(lastChannels) >= channelCheckInterval
		if channels {
			lastChannels = time.Now()
		}
		if err := f.round(ctx, channels); err != nil && ctx.Err() == nil {
			f.log.Warn("rollout round", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.kicks:
		}
	}
}

// round moves every open rollout on, and with channels follows the
// models' channels.
func (f *fleetServer) round(ctx context.Context, channels bool) error {
	all, err := f.fleet.Rollouts(ctx)
	if err != nil {
		return err
	}
	if channels {
		if err := f.followChannels(ctx, all); err != nil && ctx.Err() == nil {
			f.log.Warn("follow channels", "error", err)
		}
	}
	if !slices.ContainsFunc(all, func(r *imagefarmv1.Rollout) bool { return !r.GetState().Final() }) {
		return nil // nothing open: no device record to read
	}
	devs, err := f.dev.dev.records.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range all {
		if r.GetState().Final() {
			continue
		}
		if err := f.step(ctx, r, devs); err != nil && !errors.Is(err, errStale) && ctx.Err() == nil {
			f.log.Warn("rollout step", "rollout_id", r.GetId(), "error", err)
		}
	}
	return nil
}

// step moves one rollout on from what its job's tasks and its devices say.
func (f *fleetServer) step(ctx context.Context, r *imagefarmv1.Rollout, devs []*imagefarmv1.Device) error {
	if err := f.ensureJob(ctx, r); err != nil {
		return err
	}
	var job *imagefarmv1.Job
	var tasks []*imagefarmv1.Task
	if r.GetJobId() != "" {
		var err error
		if job, err = f.st.GetJob(ctx, r.GetJobId()); err != nil {
			return err
		}
		if tasks, err = f.st.ListTasks(ctx, r.GetJobId()); err != nil {
			return err
		}
	}
	m, err := modelFor(ctx, f.fleet, r.GetModel())
	if err != nil {
		return err
	}
	next := proto.Clone(r).(*imagefarmv1.Rollout)
	syncDevices(next, tasks, devs)
	what := f.decide(next, job, eligible(next, m, devs), modelDevicesOf(m, devs))
	if proto.Equal(next, r) {
		return nil
	}
	stored, err := f.core.UpdateRollout(ctx, r.GetId(), func(cur *imagefarmv1.Rollout) error {
		if cur.GetState() != r.GetState() || cur.GetJobId() != r.GetJobId() || cur.GetUpdateTime().AsTime() != r.GetUpdateTime().AsTime() {
			return errStale
		}
		proto.Reset(cur)
		proto.Merge(cur, next)
		cur.UpdateTime = now()
		return nil
	})
	if err != nil {
		return err
	}
	if what != "" {
		f.recordRollout(ctx, controllerActor, stored, what)
	}
	if r.GetJobId() != stored.GetJobId() || stored.GetState() == rBlocked || stored.GetState().Final() {
		f.endJob(ctx, stored, r.GetJobId())
	}
	return f.ensureJob(ctx, stored)
}

// syncDevices brings r's devices up to date with its job's tasks and the
// devices' records: a task's device is added when first seen, its result
// follows its task, and a first-article device is DONE once it booted
// back after its verified write.
func syncDevices(r *imagefarmv1.Rollout, tasks []*imagefarmv1.Task, devs []*imagefarmv1.Device) {
	byID := map[string]*imagefarmv1.Device{}
	for _, d := range devs {
		byID[d.GetId()] = d
	}
	for _, t := range tasks {
		if t.GetState() == imagefarmv1.TaskState_TASK_STATE_LOST {
			continue // the device rebooted mid-write: its next boot replaces the task
		}
		i := slices.IndexFunc(r.Devices, func(rd *imagefarmv1.RolloutDevice) bool { return rd.GetTaskId() == t.GetId() })
		if i < 0 {
			id := strings.TrimPrefix(t.GetNodeId(), deviceNodePrefix)
			d := byID[id]
			r.Devices = append(r.Devices, &imagefarmv1.RolloutDevice{DeviceId: id, Serial: d.GetSerial(), Model: d.GetModel(),
				Wave: r.GetWave(), JobId: t.GetJobId(), TaskId: t.GetId()})
			i = len(r.Devices) - 1
		}
		rd := r.Devices[i]
		switch s := t.GetState(); {
		case !s.Final():
			rd.Result = imagefarmv1.RolloutResult_ROLLOUT_RESULT_WRITING
		case s == imagefarmv1.TaskState_TASK_STATE_DONE:
			rd.WriteTime = t.GetFinishTime()
			if rd.GetResult() != imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE {
				rd.Result = imagefarmv1.RolloutResult_ROLLOUT_RESULT_VERIFIED
			}
		default:
			rd.Result, rd.WriteTime = imagefarmv1.RolloutResult_ROLLOUT_RESULT_FAILED, t.GetFinishTime()
			rd.Reason = cmp.Or(t.GetFailure().GetMessage(), "task "+enumWord(s))
		}
	}
	for _, rd := range r.Devices {
		if rd.GetResult() != imagefarmv1.RolloutResult_ROLLOUT_RESULT_VERIFIED {
			continue
		}
		if rd.GetWave() > 0 {
			rd.Result = imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE
			continue
		}
		if b := byID[rd.GetDeviceId()].GetLastBootTime(); b != nil && b.AsTime().After(rd.GetWriteTime().AsTime()) {
			rd.Result, rd.BootTime = imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE, b
		}
	}
}

func enumWord(s imagefarmv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

func jobWord(s imagefarmv1.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

// waveTally counts the current wave's devices by result.
type waveTally struct {
	writing, verified, done, failed int
	failures                        []string
}

func tally(r *imagefarmv1.Rollout) waveTally {
	var w waveTally
	for _, rd := range r.GetDevices() {
		if rd.GetWave() != r.GetWave() {
			continue
		}
		switch rd.GetResult() {
		case imagefarmv1.RolloutResult_ROLLOUT_RESULT_WRITING:
			w.writing++
		case imagefarmv1.RolloutResult_ROLLOUT_RESULT_VERIFIED:
			w.verified++
		case imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE:
			w.done++
		case imagefarmv1.RolloutResult_ROLLOUT_RESULT_FAILED:
			w.failed++
			w.failures = append(w.failures, fmt.Sprintf("%s: %s", cmp.Or(rd.GetSerial(), rd.GetDeviceId()), rd.GetReason()))
		}
	}
	return w
}

// decide moves r (already synced) to its next state, and says what
// happened ("" for nothing worth a record). job is the current wave's job
// (nil when none), left the devices of the model the rollout may still
// take, known all of the model's devices.
func (f *fleetServer) decide(r *imagefarmv1.Rollout, job *imagefarmv1.Job, left, known int) string {
	w := tally(r)
	switch r.GetState() {
	case rFirst:
		switch {
		case w.failed > 0:
			r.State = rBlocked
			r.Reason = fmt.Sprintf("first article failed: %s: no other device of %q gets %s; abort the rollout (imagefarm rollout abort %q) and start it again once fixed",
				strings.Join(w.failures, "; "), r.GetModel(), shortDigest(r.GetManifestDigest()), r.GetModel())
			return r.Reason
		case w.done >= int(r.GetWaveCount()) && r.GetPolicy().GetAutoApprove():
			r.State, r.ApprovedBy, r.ApproveTime = rRolling, autoApprover, now()
			r.JobId, r.WaveCount = "", 0
			return fmt.Sprintf("first article passed on %d device(s): approved by the policy", w.done)
		case w.done >= int(r.GetWaveCount()):
			r.State = rAwaiting
			return fmt.Sprintf("first article passed on %d device(s): waiting for imagefarm rollout approve %q", w.done, r.GetModel())
		case job != nil && job.GetState().Final() && w.writing == 0 && w.verified+w.done < int(r.GetWaveCount()):
			r.State = rBlocked
			r.Reason = fmt.Sprintf("its first-article job %s ended %s before the sample passed: abort the rollout and start it again", job.GetId(), jobWord(job.GetState()))
			return r.Reason
		}
	case rRolling:
		return f.decideWave(r, job, w, left, known)
	}
	return ""
}

// decideWave moves a rolling rollout on: a wave over its failure
// threshold pauses it; a wave done (or none yet) starts the next; no
// device left ends it.
func (f *fleetServer) decideWave(r *imagefarmv1.Rollout, job *imagefarmv1.Job, w waveTally, left, known int) string {
	limit := int(r.GetPolicy().GetFailureThresholdPercent())
	if r.GetWaveCount() > 0 && w.failed*100 > limit*int(r.GetWaveCount()) {
		r.State = rPaused
		r.Reason = fmt.Sprintf("wave %d: %d of %d devices failed, over the %d%% threshold: %s; resume (imagefarm rollout resume %q) starts the next wave, abort ends the rollout",
			r.GetWave(), w.failed, r.GetWaveCount(), limit, strings.Join(w.failures, "; "), r.GetModel())
		return r.Reason
	}
	waveOver := r.GetJobId() == "" || job != nil && job.GetState().Final()
	if left == 0 && w.writing == 0 {
		r.State, r.FinishTime, r.Reason = rDone, now(), ""
		return fmt.Sprintf("every known device of %q has a result", r.GetModel())
	}
	if !waveOver || left == 0 {
		return ""
	}
	size := int(r.GetPolicy().GetWaveSize())
	if size == 0 {
		size = max(1, (known*int(r.GetPolicy().GetWavePercent())+99)/100)
	}
	r.Wave++
	r.WaveCount = uint32(min(size, left))
	r.JobId = waveJobID(r.GetId(), r.GetWave())
	return fmt.Sprintf("wave %d: %d device(s)", r.GetWave(), r.GetWaveCount())
}

// shortDigest is a digest cut for messages.
func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// modelDevicesOf counts the known devices of m.
func modelDevicesOf(m *imagefarmv1.Model, devs []*imagefarmv1.Device) int {
	n := 0
	for _, d := range devs {
		if m != nil && slices.Contains(modelNames(m), d.GetModel()) {
			n++
		}
	}
	return n
}

// eligible counts the devices r may still take.
func eligible(r *imagefarmv1.Rollout, m *imagefarmv1.Model, devs []*imagefarmv1.Device) int {
	n := 0
	for _, d := range devs {
		if rolloutTakes(r, m, d) {
			n++
		}
	}
	return n
}

// rolloutTakes reports whether r may take device d: one of its model's,
// not yet taken by r, not already on r's digest.
func rolloutTakes(r *imagefarmv1.Rollout, m *imagefarmv1.Model, d *imagefarmv1.Device) bool {
	if m == nil || !slices.Contains(modelNames(m), d.GetModel()) || d.GetLastImageDigest() == r.GetManifestDigest() {
		return false
	}
	return !slices.ContainsFunc(r.GetDevices(), func(rd *imagefarmv1.RolloutDevice) bool { return rd.GetDeviceId() == d.GetId() })
}
