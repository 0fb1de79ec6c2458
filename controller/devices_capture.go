package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Bounds of what a capturing device may send.
const (
	// maxCapturePiece bounds one ChunkPiece or ManifestPiece.
	maxCapturePiece = 1 << 20
	// maxCaptureManifest bounds the manifest a device sends: a 4 TB disk
	// of 4 MiB chunks is about 1 M chunks of about 250 bytes.
	maxCaptureManifest = 256 << 20
)

// Capture implements DeviceService.Capture: the device's capture task's
// upload, checked chunk by chunk, stored in the catalog by the
// controller, which commits it and ends the task.
func (c *deviceServer) Capture(stream imagefarmv1.DeviceService_CaptureServer) error {
	ctx := stream.Context()
	who := callDevice(ctx)
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetBegin() == nil {
		return toStatus(fmt.Errorf("a capture upload starts with a CaptureBegin: %w", errProtocol))
	}
	t, job, dev, err := c.captureTask(ctx, who.DeviceID, first.GetBegin())
	if err != nil {
		return toStatus(err)
	}
	c.heard(who.DeviceID)
	spec := job.GetCapture()
	up := &captureUpload{c: c, stream: stream, task: t, dev: dev, wanted: map[string]*imagefarmv1.ChunkOffer{},
		res: &imagefarmv1.CaptureResult{ImageRef: job.GetImageRef(), Model: dev.GetModel()}}
	err = c.cat.Receive(ctx, spec.GetName(), spec.GetVersion(), func(ctx context.Context, r *catalog.Receiver) error {
		up.recv = r
		return up.run(ctx)
	})
	if err != nil {
		c.failCapture(ctx, t, err)
		return toStatus(err)
	}
	c.recordCapture(ctx, t, dev, up.res)
	return stream.Send(&imagefarmv1.CaptureResponse{Body: &imagefarmv1.CaptureResponse_Result{Result: up.res}})
}

// captureTask is the capture task the device's upload is for: the one it
// runs now, of a capture job, under way. Anything else is refused.
func (c *deviceServer) captureTask(ctx context.Context, deviceID string, b *imagefarmv1.CaptureBegin) (*imagefarmv1.Task, *imagefarmv1.Job, *imagefarmv1.Device, error) {
	dev, err := c.dev.records.Get(ctx, deviceID)
	if err != nil {
		return nil, nil, nil, err
	}
	if dev.GetTaskId() == "" || dev.GetTaskId() != b.GetTaskId() {
		return nil, nil, nil, fmt.Errorf("task %s is not the task device %s runs: it may upload nothing for it: %w",
			ident.Quote(b.GetTaskId()), deviceID, errNotForDevice)
	}
	t, err := c.st.GetTask(ctx, core.JobOf(b.GetTaskId()), b.GetTaskId())
	if err != nil {
		return nil, nil, nil, err
	}
	job, err := c.st.GetJobRecord(ctx, t.GetJobId())
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case !isCaptureJob(job):
		return nil, nil, nil, fmt.Errorf("task %s writes the device, it captures nothing: %w", t.GetId(), errNotForDevice)
	case t.GetState().Final() || t.GetEpoch() != b.GetEpoch() || t.GetNodeId() != deviceNode(deviceID):
		return nil, nil, nil, fmt.Errorf("task %s is %s (epoch %d): reboot the device to get its work again: %w",
			t.GetId(), t.GetState(), t.GetEpoch(), errNotForDevice)
	}
	return t, job, dev, nil
}

// captureUpload is one device's capture upload, read by one goroutine.
type captureUpload struct {
	c      *deviceServer
	stream imagefarmv1.DeviceService_CaptureServer
	recv   *catalog.Receiver
	task   *imagefarmv1.Task
	dev    *imagefarmv1.Device
	wanted map[string]*imagefarmv1.ChunkOffer // offered, not stored, not yet sent
	cur    *imagefarmv1.ChunkOffer            // the chunk whose pieces arrive
	buf    []byte
	man    bytes.Buffer
	res    *imagefarmv1.CaptureResult
}

// run reads the device's messages until its manifest is committed.
func (u *captureUpload) run(ctx context.Context) error {
	for {
		m, err := u.stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the device ended its upload before sending its manifest: %w", errProtocol)
		}
		if err != nil {
			return err
		}
		u.c.heard(u.dev.GetId())
		var done bool
		switch {
		case m.GetOffer() != nil:
			err = u.offer(ctx, m.GetOffer())
		case m.GetPiece() != nil:
			err = u.piece(ctx, m.GetPiece())
		case m.GetManifest() != nil:
			done, err = u.manifest(ctx, m.GetManifest())
		default:
			err = fmt.Errorf("a capture message with no offer, piece or manifest: %w", errProtocol)
		}
		if err != nil || done {
			return err
		}
	}
}

// offer answers an offered chunk: stored when the catalog has it, else
// wanted.
func (u *captureUpload) offer(ctx context.Context, o *imagefarmv1.ChunkOffer) error {
	size := int64(u.task.GetDrive().GetSizeBytes())
	if o.GetLength() < 1 || o.GetLength() > catalog.MaxChunkSize || o.GetOffset() < 0 || o.GetOffset()+o.GetLength() > size {
		return fmt.Errorf("chunk %s of %d bytes at offset %d: want 1 to %d bytes within the disk's %d: %w",
			ident.Quote(o.GetId()), o.GetLength(), o.GetOffset(), catalog.MaxChunkSize, size, errProtocol)
	}
	stored, ok, err := u.recv.Have(ctx, o.GetId())
	if err != nil {
		return err
	}
	if ok {
		u.res.ChunksDeduplicated++
		return u.stream.Send(&imagefarmv1.CaptureResponse{Body: &imagefarmv1.CaptureResponse_Stored{
			Stored: &imagefarmv1.ChunkStored{Id: o.GetId(), Stored: stored, Deduplicated: true}}})
	}
	u.wanted[o.GetId()] = o
	return u.stream.Send(&imagefarmv1.CaptureResponse{Body: &imagefarmv1.CaptureResponse_Wanted{Wanted: &imagefarmv1.ChunkWanted{Id: o.GetId()}}})
}

// piece takes part of a wanted chunk; the last piece stores the chunk
// once its bytes are checked against its id.
func (u *captureUpload) piece(ctx context.Context, p *imagefarmv1.ChunkPiece) error {
	if u.cur == nil {
		o, ok := u.wanted[p.GetId()]
		if !ok {
			return fmt.Errorf("piece of chunk %s, which was not offered and wanted: %w", ident.Quote(p.GetId()), errProtocol)
		}
		u.cur, u.buf = o, make([]byte, 0, o.GetLength())
	}
	o := u.cur
	if p.GetId() != o.GetId() || len(p.GetData()) > maxCapturePiece || int64(len(u.buf)+len(p.GetData())) > o.GetLength() {
		return fmt.Errorf("piece of chunk %s (%d bytes) while chunk %s of %d bytes has %d: %w",
			ident.Quote(p.GetId()), len(p.GetData()), o.GetId(), o.GetLength(), len(u.buf), errProtocol)
	}
	u.buf = append(u.buf, p.GetData()...)
	if !p.GetLast() {
		return nil
	}
	u.cur = nil
	delete(u.wanted, o.GetId())
	if int64(len(u.buf)) != o.GetLength() {
		return fmt.Errorf("chunk %s at offset %d ended after %d of its %d bytes: %w", o.GetId(), o.GetOffset(), len(u.buf), o.GetLength(), errProtocol)
	}
	stored, err := u.recv.Put(ctx, o.GetId(), u.buf)
	if err != nil {
		return fmt.Errorf("chunk at offset %d: %w", o.GetOffset(), err)
	}
	u.res.ChunksSent++
	u.res.BytesStored += uint64(stored)
	return u.stream.Send(&imagefarmv1.CaptureResponse{Body: &imagefarmv1.CaptureResponse_Stored{
		Stored: &imagefarmv1.ChunkStored{Id: o.GetId(), Stored: stored}}})
}

// manifest takes part of the device's manifest; the last piece commits
// the capture: the controller's own fields (the device's model, the
// kind, the source) over the device's, signed with the controller's key.
func (u *captureUpload) manifest(ctx context.Context, p *imagefarmv1.ManifestPiece) (bool, error) {
	if len(p.GetData()) > maxCapturePiece || u.man.Len()+len(p.GetData()) > maxCaptureManifest {
		return false, fmt.Errorf("a manifest over %s: %w", humanize.IBytes(maxCaptureManifest), errProtocol)
	}
	u.man.Write(p.GetData())
	if !p.GetLast() {
		return false, nil
	}
	var m catalog.Manifest
	if err := json.Unmarshal(u.man.Bytes(), &m); err != nil {
		return false, fmt.Errorf("%w: the device's manifest: %v", catalog.ErrBadManifest, err)
	}
	if want := int64(u.task.GetDrive().GetSizeBytes()); m.Size != want {
		return false, fmt.Errorf("%w: the device's manifest is %d bytes, its disk %s is %d", catalog.ErrBadManifest, m.Size, u.task.GetDrive().GetId(), want)
	}
	m.Kind, m.Models, m.Created, m.WIM = catalog.KindDisk, []string{u.dev.GetModel()}, time.Now().UTC(), nil
	m.Source = fmt.Sprintf("capture of device %s disk %s", u.dev.GetSerial(), u.task.GetDrive().GetSerial())
	opts := catalog.PushOptions{SignKey: u.c.signKey}
	digest, err := u.recv.Commit(ctx, &m, opts)
	if err != nil {
		return false, err
	}
	u.res.Digest, u.res.BytesRead = digest, uint64(m.Size)
	u.res.Chunks = uint32(len(m.Chunks))
	for _, ch := range m.Chunks {
		if ch.Zero {
			u.res.ZeroChunks++
		}
	}
	if k := u.c.signKey; k != nil {
		u.res.SignedBy = k.ID
	} else {
		u.res.UnsignedReason = "the controller has no signing key (imagefarm controller --sign-key): sign it with imagefarm image sign"
	}
	return true, nil
}

// failCapture ends a capture task FAILED with why its upload failed. An
// upload cut off (the device rebooted, its connection dropped) is no
// failure: the device's next boot captures again, skipping the chunks
// stored.
func (c *deviceServer) failCapture(ctx context.Context, t *imagefarmv1.Task, err error) {
	if ctx.Err() != nil {
		return
	}
	reason := imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL
	if errors.Is(err, catalog.ErrChunkMismatch) || errors.Is(err, catalog.ErrBadManifest) {
		reason = imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT
	}
	r := &imagefarmv1.TaskResult{TaskId: t.GetId(), Epoch: t.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
		Failure: &imagefarmv1.Failure{Reason: reason, Message: "capture refused: " + message(err)}}
	ctx = context.WithoutCancel(ctx)
	if eerr := c.core.EndTask(ctx, nodeActor(t.GetNodeId()), t, r); eerr != nil {
		c.log.Warn("end failed capture", "task_id", t.GetId(), "error", eerr)
	}
	c.wake()
}

// recordCapture ends the capture task DONE, records the new version in
// the audit trail (and tells the catalog watcher), and makes the device
// idle.
func (c *deviceServer) recordCapture(ctx context.Context, t *imagefarmv1.Task, dev *imagefarmv1.Device, res *imagefarmv1.CaptureResult) {
	ctx = context.WithoutCancel(ctx)
	r := &imagefarmv1.TaskResult{TaskId: t.GetId(), Epoch: t.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_DONE,
		VerifiedDigest: res.GetDigest(), Capture: res}
	if err := c.core.EndTask(ctx, nodeActor(t.GetNodeId()), t, r); err != nil {
		c.log.Warn("end capture", "task_id", t.GetId(), "error", err)
	}
	msg := fmt.Sprintf("captured from device %s (%s), %d chunks: %d sent, %d deduplicated, %d zero", dev.GetSerial(), dev.GetModel(),
		res.GetChunks(), res.GetChunksSent(), res.GetChunksDeduplicated(), res.GetZeroChunks())
	rec := c.audit.Record(ctx, &imagefarmv1.AuditRecord{Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH, Actor: nodeActor(t.GetNodeId()),
		ImageRef: res.GetImageRef(), ImageDigest: res.GetDigest(), SizeBytes: res.GetBytesRead(), DeviceId: dev.GetId(),
		JobId: t.GetJobId(), TaskId: t.GetId(), Message: msg})
	if rec != nil {
		if err := c.refs.Set(ctx, res.GetImageRef(), res.GetDigest()); err != nil {
			c.log.Warn("recorded capture not passed to the catalog watcher", "image_ref", res.GetImageRef(), "error", err)
		}
	}
	if res.GetSignedBy() != "" {
		c.audit.Record(ctx, &imagefarmv1.AuditRecord{Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_SIGN, Actor: controllerActor,
			ImageRef: res.GetImageRef(), ImageDigest: res.GetDigest(), Message: "key " + res.GetSignedBy()})
	}
	c.deviceTaskEnded(ctx, dev.GetId(), t.GetId())
	c.wake()
}
