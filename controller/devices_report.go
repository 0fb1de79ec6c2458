package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller/core"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Report implements DeviceService.Report. Progress and results go through
// the imagers' own handling (handle: the same seq/ack, the same checks of
// what can be true), on a session whose node is the device's; heartbeats
// only mark the device heard, and tell it to stop a task that ended
// without it (canceled, or lost while it was silent).
func (c *deviceServer) Report(stream imagefarmv1.DeviceService_ReportServer) error {
	ctx := stream.Context()
	who := callDevice(ctx)
	ds := &deviceStream{DeviceService_ReportServer: stream}
	s := &session{nodeID: deviceNode(who.DeviceID), instanceID: who.Session, epoch: deviceEpoch, stream: ds}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		c.heard(who.DeviceID)
		var req *imagefarmv1.ConnectRequest
		switch b := m.GetBody().(type) {
		case *imagefarmv1.ReportRequest_Heartbeat:
			if err := c.stopEnded(ctx, s, who.DeviceID); err != nil {
				return toStatus(err)
			}
			continue
		case *imagefarmv1.ReportRequest_TaskProgress:
			req = &imagefarmv1.ConnectRequest{Seq: m.GetSeq(), Body: &imagefarmv1.ConnectRequest_TaskProgress{TaskProgress: b.TaskProgress}}
		case *imagefarmv1.ReportRequest_TaskResult:
			req = &imagefarmv1.ConnectRequest{Seq: m.GetSeq(), Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: b.TaskResult}}
		default:
			return toStatus(fmt.Errorf("a report with no heartbeat, progress or result: %w", errProtocol))
		}
		// A result's Ack waits until the device record says how the task
		// ended: a device told its result is recorded reboots, and its
		// next boot must find its record idle.
		ds.hold = m.GetTaskResult() != nil
		if err := c.imagers.handle(ctx, s, req); err != nil {
			return toStatus(err)
		}
		if r := m.GetTaskResult(); r != nil {
			c.deviceTaskEnded(ctx, who.DeviceID, r.GetTaskId())
		}
		if err := ds.release(); err != nil {
			return err
		}
	}
}

// deviceStream lets a device's Report stream serve as an imager session's:
// the controller's Acks and StopTasks go to the device; nothing else is
// ever sent on a device's session.
type deviceStream struct {
	imagefarmv1.DeviceService_ReportServer
	// hold keeps Acks back until release, which sends them. Only Report's
	// goroutine sets it and sends Acks.
	hold bool
	held []*imagefarmv1.Ack
}

var _ imagefarmv1.ImagerService_ConnectServer = (*deviceStream)(nil)

func (s *deviceStream) Send(m *imagefarmv1.ConnectResponse) error {
	switch b := m.GetBody().(type) {
	case *imagefarmv1.ConnectResponse_Ack:
		if s.hold {
			s.held = append(s.held, b.Ack)
			return nil
		}
		return s.DeviceService_ReportServer.Send(&imagefarmv1.ReportResponse{Body: &imagefarmv1.ReportResponse_Ack{Ack: b.Ack}})
	case *imagefarmv1.ConnectResponse_StopTask:
		return s.DeviceService_ReportServer.Send(&imagefarmv1.ReportResponse{Body: &imagefarmv1.ReportResponse_StopTask{StopTask: b.StopTask}})
	}
	return nil
}

// release sends the Acks held back.
func (s *deviceStream) release() error {
	s.hold = false
	for len(s.held) > 0 {
		a := s.held[0]
		s.held = s.held[1:]
		if err := s.DeviceService_ReportServer.Send(&imagefarmv1.ReportResponse{Body: &imagefarmv1.ReportResponse_Ack{Ack: a}}); err != nil {
			return err
		}
	}
	return nil
}

// Recv is never called: Report reads the device's messages itself.
func (s *deviceStream) Recv() (*imagefarmv1.ConnectRequest, error) {
	return nil, fmt.Errorf("a device session is not read as an imager's: %w", errProtocol)
}

var _ grpc.ServerStream = (*deviceStream)(nil)

// stopEnded tells the device to stop its task if the task ended without
// it.
func (c *deviceServer) stopEnded(ctx context.Context, s *session, deviceID string) error {
	dev, err := c.dev.records.Get(ctx, deviceID)
	if err != nil || dev.GetTaskId() == "" {
		return err
	}
	t, err := c.st.GetTask(ctx, core.JobOf(dev.GetTaskId()), dev.GetTaskId())
	if err != nil || !t.GetState().Final() || t.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE {
		return err
	}
	reason := imagefarmv1.StopReason_STOP_REASON_CANCELED
	if t.GetState() == imagefarmv1.TaskState_TASK_STATE_LOST {
		reason = imagefarmv1.StopReason_STOP_REASON_LOST
	}
	return s.stop(t.GetId(), t.GetEpoch(), reason, "the task ended "+t.GetState().String())
}

// deviceTaskEnded updates a device's record once its task has ended: a
// verified write becomes its last image, and the device is idle, so that
// its next network boot boots its local disk.
func (c *deviceServer) deviceTaskEnded(ctx context.Context, deviceID, taskID string) {
	defer c.kickRollouts()
	t, err := c.st.GetTask(ctx, core.JobOf(taskID), taskID)
	if err != nil || !t.GetState().Final() || t.GetNodeId() != deviceNode(deviceID) {
		return
	}
	job, err := c.st.GetJobRecord(ctx, t.GetJobId())
	if err != nil {
		c.log.Warn("device task ended, job unreadable", "device_id", deviceID, "task_id", taskID, "error", err)
		return
	}
	_, err = c.updateDevice(ctx, deviceID, func(d *imagefarmv1.Device) error {
		if d.TaskId != taskID {
			return nil
		}
		d.TaskId, d.State, d.LastSeenTime = "", imagefarmv1.DeviceState_DEVICE_STATE_IDLE, now()
		if t.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE {
			d.LastImageRef, d.LastImageDigest, d.LastWriteTime = job.GetImageRef(), t.GetVerifiedDigest(), t.GetFinishTime()
			d.LastJobId, d.LastTaskId = t.GetJobId(), t.GetId()
		}
		return nil
	})
	if err != nil {
		c.log.Warn("record device task end", "device_id", deviceID, "task_id", taskID, "error", err)
	}
	if t.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE && job.GetOptions().GetResetSpec() != nil {
		c.dropResetState(ctx, deviceID)
	}
}

// Run ends LOST, until ctx ends, the task of a device silent for the
// heartbeat TTL. The device stays IMAGING (its disk may be half written),
// so its next network boot boots the deploy environment again.
func (c *deviceServer) Run(ctx context.Context) error {
	started := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		all, err := c.dev.records.List(ctx)
		if err != nil {
			continue
		}
		for _, d := range all {
			if d.GetTaskId() == "" {
				continue
			}
			c.dev.mu.Lock()
			seen, ok := c.dev.seen[d.GetId()]
			c.dev.mu.Unlock()
			if !ok {
				seen = started // every device gets a full TTL from this controller's start
			}
			if time.Since(seen) > c.ttl {
				why := fmt.Sprintf("device %s was silent for %s", d.GetSerial(), c.ttl)
				if err := c.core.LoseTask(ctx, core.JobOf(d.GetTaskId()), d.GetTaskId(), why); err != nil {
					c.log.Warn("lose device task", "device_id", d.GetId(), "task_id", d.GetTaskId(), "error", err)
				}
			}
		}
	}
}
