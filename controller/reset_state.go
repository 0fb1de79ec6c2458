package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/controller/core"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// ResetStateBucket is the JetStream object store of the devices' reset
// state: "DEVICE_ID/NAME" -> bytes.
const ResetStateBucket = "imagefarm-reset-state"

// Bounds of a reset's saved state.
const (
	maxResetState      = 2 << 30 // bytes of one object: a keep-list capture with provisioning packages
	resetStateChunk    = 1 << 20 // bytes per message GetResetState sends
	maxResetStateNames = 16
)

var resetStateName = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// openResetState opens the reset state object store, kept by replicas servers.
func openResetState(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.ObjectStore, error) {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: ResetStateBucket,
		Description: "imagefarm reset state: device id/name -> what a reset must not lose to a power cut",
		Storage:     jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("ensure object store %s: %w", ResetStateBucket, err)
	}
	return obs, nil
}

// resetStateKey is the object a device's reset state is kept in, after
// checking that the calling device runs taskID, a reset, now.
func (c *deviceServer) resetStateKey(ctx context.Context, taskID, name string) (string, error) {
	if !resetStateName.MatchString(name) {
		return "", fmt.Errorf("reset state name %q: want 1 to 64 of a-z, 0-9, '.', '_', '-': %w", name, errBadRequest)
	}
	id := callDevice(ctx).DeviceID
	c.heard(id)
	t, err := c.st.GetTask(ctx, core.JobOf(taskID), taskID)
	if err != nil || t.GetNodeId() != deviceNode(id) || t.GetState().Final() {
		return "", fmt.Errorf("task %q is not a task this device runs now: %w", taskID, errNotForDevice)
	}
	job, err := c.st.GetJobRecord(ctx, t.GetJobId())
	if err != nil {
		return "", err
	}
	if job.GetOptions().GetResetSpec() == nil {
		return "", fmt.Errorf("task %s is not a reset: only a reset saves state: %w", taskID, errNotForDevice)
	}
	return id + "/" + name, nil
}

// PutResetState implements DeviceService.PutResetState.
func (c *deviceServer) PutResetState(stream imagefarmv1.DeviceService_PutResetStateServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	key, err := c.resetStateKey(ctx, first.GetTaskId(), first.GetName())
	if err != nil {
		return toStatus(err)
	}
	r := &stateReader{stream: stream, buf: first.GetData()}
	info, err := c.dev.resetState.Put(ctx, jetstream.ObjectMeta{Name: key}, r)
	if r.err != nil {
		return toStatus(r.err)
	}
	if err != nil {
		return toStatus(fmt.Errorf("store reset state %s: %w", key, err))
	}
	return stream.SendAndClose(&imagefarmv1.PutResetStateResponse{SizeBytes: info.Size})
}

// stateReader reads a PutResetState stream's bytes, up to maxResetState.
type stateReader struct {
	stream imagefarmv1.DeviceService_PutResetStateServer
	buf    []byte
	n      int64
	err    error // a bad stream, which must not be stored as a short object
}

func (r *stateReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		m, err := r.stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		if err != nil {
			r.err = err
			return 0, err
		}
		r.buf = m.GetData()
	}
	n := copy(p, r.buf)
	r.buf, r.n = r.buf[n:], r.n+int64(n)
	if r.n > maxResetState {
		r.err = fmt.Errorf("reset state: more than %d bytes: %w", int64(maxResetState), errBadRequest)
		return 0, r.err
	}
	return n, nil
}

// GetResetState implements DeviceService.GetResetState.
func (c *deviceServer) GetResetState(req *imagefarmv1.GetResetStateRequest, stream imagefarmv1.DeviceService_GetResetStateServer) error {
	ctx := stream.Context()
	key, err := c.resetStateKey(ctx, req.GetTaskId(), req.GetName())
	if err != nil {
		return toStatus(err)
	}
	obj, err := c.dev.resetState.Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return toStatus(fmt.Errorf("no reset state %s saved: %w", req.GetName(), errNoResetState))
	}
	if err != nil {
		return toStatus(fmt.Errorf("read reset state %s: %w", key, err))
	}
	defer obj.Close()
	buf := make([]byte, resetStateChunk)
	for {
		n, err := io.ReadFull(obj, buf)
		if n > 0 {
			if serr := stream.Send(&imagefarmv1.GetResetStateResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return toStatus(fmt.Errorf("read reset state %s: %w", key, err))
		}
	}
}

// errNoResetState: nothing saved under a name. NotFound.
var errNoResetState = errors.New("controller: no reset state")

// dropResetState deletes a device's reset state once a reset of it ended
// DONE: the next reset starts from its disk, and the keep-list (Wi-Fi
// keys among it) is not kept longer than it is needed.
func (c *deviceServer) dropResetState(ctx context.Context, deviceID string) {
	lister, err := c.dev.resetState.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return
	}
	if err != nil {
		c.log.Warn("list reset state", "device_id", deviceID, "error", err)
		return
	}
	for _, o := range lister {
		if len(o.Name) > len(deviceID) && o.Name[:len(deviceID)+1] == deviceID+"/" {
			if err := c.dev.resetState.Delete(ctx, o.Name); err != nil {
				c.log.Warn("delete reset state", "device_id", deviceID, "name", o.Name, "error", err)
			}
		}
	}
}
