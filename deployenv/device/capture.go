package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// pieceSize is how many bytes each ChunkPiece or ManifestPiece carries:
// under gRPC's default 4 MiB message bound.
const pieceSize = 1 << 20

// capture reads the disk the assignment names, read-only, and uploads it
// through the controller's DeviceService.Capture with the catalog's own
// push code (catalog.Cut: chunks, zero chunks elided, each offered before
// it is sent). The controller stores it and ends the task; the result
// returned is what it said.
func capture(ctx context.Context, client imagefarmv1.DeviceServiceClient, cred grpc.CallOption,
	a *imagefarmv1.TaskAssignment, found []drive.Drive, rep *reporter) *imagefarmv1.TaskResult {
	fail := func(reason imagefarmv1.FailureReason, err error) *imagefarmv1.TaskResult {
		msg := err.Error()
		if st, ok := status.FromError(err); ok {
			msg = st.Message()
		}
		return &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
			Failure: &imagefarmv1.Failure{Reason: reason, Message: "capture: " + msg}}
	}
	d, err := sourceDisk(a.GetDrive(), found)
	if err != nil {
		return fail(imagefarmv1.FailureReason_FAILURE_REASON_GUARD_IDENTITY_CHANGED, err)
	}
	f, err := drive.OpenSource(d)
	if err != nil {
		return fail(imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_IO_ERROR, err)
	}
	defer f.Close()
	res, err := upload(ctx, client, cred, a, f, d.Size, rep)
	if err != nil {
		return fail(imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, err)
	}
	return &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_DONE,
		VerifiedDigest: res.GetDigest(), Capture: res}
}

// sourceDisk is the disk the controller chose, found again by its id,
// serial and size: never another one, and never a removable or USB disk.
func sourceDisk(want *imagefarmv1.DriveIdentity, found []drive.Drive) (drive.Drive, error) {
	for _, d := range found {
		if d.ID != want.GetId() {
			continue
		}
		switch {
		case d.Serial != want.GetSerial() || uint64(d.Size) != want.GetSizeBytes():
			return drive.Drive{}, fmt.Errorf("disk %s is now serial %q of %d bytes, planned as serial %q of %d: nothing read",
				d.ID, d.Serial, d.Size, want.GetSerial(), want.GetSizeBytes())
		case d.Removable || d.Transport == drive.TransportUSB:
			return drive.Drive{}, fmt.Errorf("disk %s is removable or USB: the deploy environment captures only the device's internal disk", d.ID)
		}
		return d, nil
	}
	return drive.Drive{}, fmt.Errorf("no disk %s (serial %q) in this device: nothing read", want.GetId(), want.GetSerial())
}

// upload cuts size bytes of src into the catalog through the Capture
// stream and returns the controller's result.
func upload(ctx context.Context, client imagefarmv1.DeviceServiceClient, cred grpc.CallOption,
	a *imagefarmv1.TaskAssignment, src io.ReaderAt, size int64, rep *reporter) (*imagefarmv1.CaptureResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Capture(ctx, cred)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&imagefarmv1.CaptureRequest{Body: &imagefarmv1.CaptureRequest_Begin{Begin: &imagefarmv1.CaptureBegin{
		TaskId: a.GetTaskId(), Epoch: a.GetEpoch()}}})
	if err != nil {
		return nil, err
	}
	u := &uploader{stream: stream, waiting: map[string]chan *imagefarmv1.CaptureResponse{}, done: make(chan struct{})}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(u.receive)
	g.Go(func() error {
		var read atomic.Int64
		opts := catalog.PushOptions{Name: a.GetCapture().GetName(), Version: a.GetCapture().GetVersion(), Kind: catalog.KindDisk,
			Progress: func(n int64) { rep.progress(a, imagefarmv1.TaskState_TASK_STATE_WRITING, read.Add(n), size) }}
		m, _, err := catalog.Cut(gctx, src, size, opts, u)
		if err != nil {
			return err
		}
		return u.sendManifest(m)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if u.result == nil {
		return nil, errors.New("the controller ended the capture without a result")
	}
	return u.result, nil
}

// uploader is the device's side of a Capture stream: the catalog.ChunkSink
// that offers each chunk and sends the wanted ones, and the reader of the
// controller's answers, which it hands to the chunk each names.
type uploader struct {
	stream  imagefarmv1.DeviceService_CaptureClient
	sending sync.Mutex // a chunk's pieces go out together
	mu      sync.Mutex
	waiting map[string]chan *imagefarmv1.CaptureResponse
	done    chan struct{} // closed when the stream ended; err says how
	err     error
	result  *imagefarmv1.CaptureResult
}

var _ catalog.ChunkSink = (*uploader)(nil)

// PutChunk implements catalog.ChunkSink: offer, then send if wanted.
func (u *uploader) PutChunk(ctx context.Context, id string, offset int64, data []byte) (int64, bool, error) {
	r, err := u.ask(ctx, id, func() error {
		return u.stream.Send(&imagefarmv1.CaptureRequest{Body: &imagefarmv1.CaptureRequest_Offer{Offer: &imagefarmv1.ChunkOffer{
			Id: id, Offset: offset, Length: int64(len(data))}}})
	})
	if err != nil {
		return 0, false, err
	}
	if s := r.GetStored(); s != nil {
		return s.GetStored(), false, nil
	}
	r, err = u.ask(ctx, id, func() error { return u.sendPieces(id, data) })
	if err != nil {
		return 0, false, err
	}
	if r.GetStored() == nil {
		return 0, false, fmt.Errorf("chunk %s at offset %d: the controller answered %v, want stored", id, offset, r)
	}
	return r.GetStored().GetStored(), true, nil
}

// ask sends what send sends and waits for the controller's answer about
// chunk id.
func (u *uploader) ask(ctx context.Context, id string, send func() error) (*imagefarmv1.CaptureResponse, error) {
	ch := make(chan *imagefarmv1.CaptureResponse, 1)
	u.mu.Lock()
	u.waiting[id] = ch
	u.mu.Unlock()
	u.sending.Lock()
	err := send()
	u.sending.Unlock()
	if err != nil {
		return nil, u.ended(err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-u.done:
		return nil, u.ended(nil)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (u *uploader) sendPieces(id string, data []byte) error {
	for off := 0; ; off += pieceSize {
		end := min(off+pieceSize, len(data))
		err := u.stream.Send(&imagefarmv1.CaptureRequest{Body: &imagefarmv1.CaptureRequest_Piece{Piece: &imagefarmv1.ChunkPiece{
			Id: id, Data: data[off:end], Last: end == len(data)}}})
		if err != nil || end == len(data) {
			return err
		}
	}
}

// sendManifest sends m, the last message of the upload.
func (u *uploader) sendManifest(m *catalog.Manifest) error {
	data, _, err := m.Encode()
	if err != nil {
		return err
	}
	u.sending.Lock()
	defer u.sending.Unlock()
	for off := 0; ; off += pieceSize {
		end := min(off+pieceSize, len(data))
		err := u.stream.Send(&imagefarmv1.CaptureRequest{Body: &imagefarmv1.CaptureRequest_Manifest{Manifest: &imagefarmv1.ManifestPiece{
			Data: data[off:end], Last: end == len(data)}}})
		if err != nil {
			return u.ended(err)
		}
		if end == len(data) {
			return u.stream.CloseSend()
		}
	}
}

// receive reads the controller's answers until the stream ends: the
// result, or the controller's refusal.
func (u *uploader) receive() error {
	defer close(u.done)
	for {
		r, err := u.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			u.err = err
			return err
		}
		if res := r.GetResult(); res != nil {
			u.result = res
			continue
		}
		id := r.GetStored().GetId() + r.GetWanted().GetId()
		u.mu.Lock()
		ch, ok := u.waiting[id]
		delete(u.waiting, id)
		u.mu.Unlock()
		if !ok {
			u.err = fmt.Errorf("the controller answered about chunk %q, which nothing waits for", id)
			return u.err
		}
		ch <- r
	}
}

// ended is the error a send or a wait ends with once the stream ended:
// the controller's own (its refusal) rather than the send's EOF.
func (u *uploader) ended(err error) error {
	select {
	case <-u.done:
		if u.err != nil {
			return u.err
		}
	default:
	}
	if err == nil || errors.Is(err, io.EOF) {
		// A send's io.EOF means the stream ended: Recv says why.
		<-u.done
		if u.err != nil {
			return u.err
		}
		return errors.New("the controller ended the capture early")
	}
	return err
}
