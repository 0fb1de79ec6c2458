package device

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
)

// remoteStore is the catalog's store as a device reads it: through the
// controller's DeviceService, which answers only the keys of the image the
// device's task writes. It writes nothing.
type remoteStore struct {
	c    imagefarmv1.DeviceServiceClient
	opts []grpc.CallOption // the device credential
}

var _ storage.Store = remoteStore{}

// errReadOnly is any write: a device never writes the catalog.
var errReadOnly = fmt.Errorf("a netbooted device reads the catalog only: %w", storage.ErrAccessDenied)

// storeErr turns a controller's status into the storage error the
// catalog reacts to (ErrNotFound, ErrUnreachable to retry).
func storeErr(err error) error {
	switch status.Code(err) {
	case codes.OK:
		return err
	case codes.NotFound:
		return fmt.Errorf("%w: %v", storage.ErrNotFound, status.Convert(err).Message())
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return fmt.Errorf("%w: %v", storage.ErrUnreachable, err)
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("%w: %v", storage.ErrAccessDenied, status.Convert(err).Message())
	}
	return err
}

func (s remoteStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.c.ReadObject(ctx, &imagefarmv1.ReadObjectRequest{Key: key, Offset: off, Length: n}, s.opts...)
	if err != nil {
		cancel()
		return nil, storeErr(err)
	}
	first, err := stream.Recv() // so that a missing object fails Open
	if err != nil && !errors.Is(err, io.EOF) {
		cancel()
		return nil, storeErr(err)
	}
	return &objectReader{stream: stream, cancel: cancel, buf: first.GetData(), eof: errors.Is(err, io.EOF)}, nil
}

// objectReader reads a ReadObject stream.
type objectReader struct {
	stream imagefarmv1.DeviceService_ReadObjectClient
	cancel context.CancelFunc
	buf    []byte
	eof    bool
}

func (r *objectReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		m, err := r.stream.Recv()
		if errors.Is(err, io.EOF) {
			r.eof = true
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %v", storage.ErrUnreachable, err) // cut short: the catalog retries
		}
		r.buf = m.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *objectReader) Close() error {
	r.cancel()
	return nil
}

func (s remoteStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	resp, err := s.c.StatObject(ctx, &imagefarmv1.StatObjectRequest{Key: key}, s.opts...)
	if err != nil {
		return storage.ObjectInfo{}, storeErr(err)
	}
	o := resp.GetObject()
	return storage.ObjectInfo{Key: o.GetKey(), Size: o.GetSize(), ModTime: o.GetModTime().AsTime()}, nil
}

func (s remoteStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	resp, err := s.c.ListObjects(ctx, &imagefarmv1.ListObjectsRequest{Prefix: prefix}, s.opts...)
	if err != nil {
		return storeErr(err)
	}
	for _, o := range resp.GetObjects() {
		if err := fn(storage.ObjectInfo{Key: o.GetKey(), Size: o.GetSize(), ModTime: o.GetModTime().AsTime()}); err != nil {
			return err
		}
	}
	return nil
}

func (remoteStore) Put(context.Context, string, io.Reader, int64) error    { return errReadOnly }
func (remoteStore) Create(context.Context, string, io.Reader, int64) error { return errReadOnly }
func (remoteStore) Touch(context.Context, string) error                    { return errReadOnly }
func (remoteStore) Delete(context.Context, string) error                   { return errReadOnly }
func (remoteStore) String() string                                         { return "the controller (device read path)" }
