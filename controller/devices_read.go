package controller

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// errNotForDevice: a device asks to read what its task does not need.
// PermissionDenied.
var errNotForDevice = errors.New("controller: not readable by this device")

// readPiece is how many bytes each ReadObject message carries.
const readPiece = 256 << 10

// readSet is what the calling device may read now: the image of the task
// it runs. A device without a task under way may read nothing.
func (c *deviceServer) readSet(ctx context.Context) (*catalog.ReadSet, error) {
	id := callDevice(ctx).DeviceID
	dev, err := c.dev.records.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var t *imagefarmv1.Task
	if dev.GetTaskId() != "" {
		t, err = c.st.GetTask(ctx, core.JobOf(dev.GetTaskId()), dev.GetTaskId())
	}
	if err != nil || t == nil || t.GetState().Final() {
		return nil, fmt.Errorf("device %s has no task under way: it may read nothing from the catalog: %w", id, errNotForDevice)
	}
	job, err := c.st.GetJobRecord(ctx, t.GetJobId())
	if err != nil {
		return nil, err
	}
	if isCaptureJob(job) {
		return nil, fmt.Errorf("device %s captures its disk: it may read nothing from the catalog: %w", id, errNotForDevice)
	}
	digest := job.GetManifestDigest()
	if rs, ok := c.dev.readSets.Load(digest); ok {
		return rs.(*catalog.ReadSet), nil
	}
	m, err := c.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return nil, err
	}
	rs := catalog.NewReadSet(m, digest)
	c.dev.readSets.Store(digest, rs)
	return rs, nil
}

// allowKey refuses a key the calling device may not read.
func (c *deviceServer) allowKey(ctx context.Context, key string) error {
	rs, err := c.readSet(ctx)
	if err != nil {
		return err
	}
	if !rs.Allows(key) {
		return fmt.Errorf("%s is not part of the image of this device's task: %w", ident.Quote(key), errNotForDevice)
	}
	return nil
}

// ReadObject implements DeviceService.ReadObject.
func (c *deviceServer) ReadObject(req *imagefarmv1.ReadObjectRequest, stream imagefarmv1.DeviceService_ReadObjectServer) error {
	ctx := stream.Context()
	if err := c.allowKey(ctx, req.GetKey()); err != nil {
		return toStatus(err)
	}
	if req.GetOffset() < 0 {
		return toStatus(fmt.Errorf("offset %d: want 0 or more: %w", req.GetOffset(), errBadRequest))
	}
	rc, err := c.cat.Store().Open(ctx, req.GetKey(), req.GetOffset(), req.GetLength())
	if err != nil {
		return toStatus(err)
	}
	defer rc.Close()
	buf := make([]byte, readPiece)
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			if serr := stream.Send(&imagefarmv1.ReadObjectResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return toStatus(err)
		}
	}
}

// StatObject implements DeviceService.StatObject.
func (c *deviceServer) StatObject(ctx context.Context, req *imagefarmv1.StatObjectRequest) (*imagefarmv1.StatObjectResponse, error) {
	if err := c.allowKey(ctx, req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	oi, err := c.cat.Store().Stat(ctx, req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &imagefarmv1.StatObjectResponse{Object: objectInfo(oi)}, nil
}

// ListObjects implements DeviceService.ListObjects.
func (c *deviceServer) ListObjects(ctx context.Context, req *imagefarmv1.ListObjectsRequest) (*imagefarmv1.ListObjectsResponse, error) {
	rs, err := c.readSet(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if !rs.AllowsList(req.GetPrefix()) {
		return nil, toStatus(fmt.Errorf("prefix %s: a device lists only the signatures of its task's image: %w", ident.Quote(req.GetPrefix()), errNotForDevice))
	}
	resp := &imagefarmv1.ListObjectsResponse{}
	err = c.cat.Store().List(ctx, req.GetPrefix(), func(oi storage.ObjectInfo) error {
		resp.Objects = append(resp.Objects, objectInfo(oi))
		return nil
	})
	return resp, toStatus(err)
}

func objectInfo(oi storage.ObjectInfo) *imagefarmv1.ObjectInfo {
	return &imagefarmv1.ObjectInfo{Key: oi.Key, Size: oi.Size, ModTime: timestamppb.New(oi.ModTime)}
}
