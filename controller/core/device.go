package core

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Device states, short, for the table.
const (
	deviceNone    = imagefarmv1.DeviceState_DEVICE_STATE_UNSPECIFIED
	deviceIdle    = imagefarmv1.DeviceState_DEVICE_STATE_IDLE
	deviceBooting = imagefarmv1.DeviceState_DEVICE_STATE_BOOTING
	deviceImaging = imagefarmv1.DeviceState_DEVICE_STATE_IMAGING
)

// deviceMoves is the table of a netbooted device's legal state changes.
//
//	(none)  → IDLE               its first enrollment
//	IDLE    → BOOTING            PlanBoot gave it a boot token
//	IDLE, BOOTING → IMAGING      it enrolled and got a task
//	BOOTING, IMAGING → IDLE      it enrolled without a task, or its task ended
//
// A device whose task was lost (silent, or its deploy environment
// restarted) stays IMAGING, its disk maybe half written, so that its next
// network boot is the deploy environment again.
var deviceMoves = machine[imagefarmv1.DeviceState]{entity: "device", moves: map[imagefarmv1.DeviceState][]imagefarmv1.DeviceState{
	deviceNone:    {deviceIdle},
	deviceIdle:    {deviceIdle, deviceBooting, deviceImaging},
	deviceBooting: {deviceBooting, deviceIdle, deviceImaging},
	deviceImaging: {deviceImaging, deviceIdle},
}}

// ApplyDevice is apply for a device record: write is the device store's
// write (devices.Store.Update), change the change; a move the table
// refuses stores nothing and is a *MoveError.
func ApplyDevice(id string, write func(func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error),
	change func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error) {
	return apply(deviceMoves, id, write, change)
}

// IsDeviceJob reports whether j writes netbooted devices' internal disks.
func IsDeviceJob(j *imagefarmv1.Job) bool {
	return j.GetTargets().GetDevices() != nil || j.GetTargets().GetDeviceOrder() != nil
}

// HoldsDevice reports whether t counts for its device job: every task but
// a LOST one (the device rebooted mid-write), which the device's next
// boot replaces.
func HoldsDevice(t *imagefarmv1.Task) bool { return t.GetState() != taskLost }

// deviceOutcome is jobOutcome for a device job: a device list ends when
// each device's task has ended (SUCCEEDED, PARTIAL or FAILED as drive
// lists do), a device order when count devices are verified.
func deviceOutcome(job *imagefarmv1.Job, done uint32, open int) imagefarmv1.JobState {
	if o := job.GetTargets().GetDeviceOrder(); o != nil {
		if done >= o.GetCount() {
			return jobSucceeded
		}
		return jobNone
	}
	held := 0
	for _, t := range job.GetTasks() {
		if HoldsDevice(t) {
			held++
		}
	}
	want := len(job.GetTargets().GetDevices().GetDevices())
	switch {
	case held < want || open > 0:
		return jobNone
	case int(done) == want:
		return jobSucceeded
	case done == 0:
		return jobFailed
	}
	return jobPartial
}

// NewTaskID names a new task of a job.
func NewTaskID(jobID string) string { return taskID(jobID) }

// AssignDevice stores t, a device job's task, ASSIGNED and marks its job
// RUNNING; it returns the task and its job, or a nil task when the job
// ended or was canceled meanwhile (t is then canceled too).
func (c *Core) AssignDevice(ctx context.Context, t *imagefarmv1.Task) (*imagefarmv1.Task, *imagefarmv1.Job, error) {
	c.placing.Lock() // not while CancelJob ends the job's tasks
	defer c.placing.Unlock()
	job, err := c.st.GetJob(ctx, t.GetJobId())
	if err != nil || job.GetState().Final() {
		return nil, nil, err
	}
	t.State = taskAssigned
	if _, err := c.createTask(ctx, t); err != nil {
		return nil, nil, err
	}
	started, err := c.startJob(ctx, t.GetJobId())
	if err != nil {
		return nil, nil, err
	}
	if started.GetState() == jobCanceled {
		c.cancelTask(ctx, ControllerActor, t)
		return nil, nil, nil
	}
	return t, job, nil
}

// RefuseTask stores t FAILED at placement, with failure f: a rule of the
// device (its model, its disks) refused it and nothing was written. It is
// recorded as a guard refusal, and the job settled.
func (c *Core) RefuseTask(ctx context.Context, t *imagefarmv1.Task, f *imagefarmv1.Failure) error {
	t.State, t.Failure, t.FinishTime = taskFailed, f, timestamppb.Now()
	created, err := c.createTask(ctx, t)
	if created != nil {
		c.recordTaskEnd(ctx, ControllerActor, created)
	}
	if err != nil {
		return err
	}
	return c.SettleJob(ctx, t.GetJobId())
}

// LoseTask ends one task LOST for why (its device's deploy environment
// restarted, or went silent), frees its drive and settles its job. A task
// that had ended is left as it is.
func (c *Core) LoseTask(ctx context.Context, jobID, taskID, why string) error {
	t, err := c.updateTask(ctx, jobID, taskID, func(t *imagefarmv1.Task) error {
		t.State, t.FinishTime = taskLost, timestamppb.Now()
		t.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_NODE_LOST, Message: why}
		return nil
	})
	if t != nil {
		c.recordTaskEnd(ctx, ControllerActor, t)
	}
	if errors.Is(err, ErrIllegalMove) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.SettleJob(ctx, jobID)
}
