package imager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// IOError is a drive's refusal to be written or read, at an offset.
type IOError struct {
	Op     string // "write" or "read back"
	Offset int64
	Err    error
}

func (e *IOError) Error() string { return fmt.Sprintf("%s at offset %d: %v", e.Op, e.Offset, e.Err) }

func (e *IOError) Unwrap() error { return e.Err }

// MismatchError says where a drive's read-back first differed from the image.
type MismatchError struct {
	Offset int64 // first byte that differs
	Chunk  int
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("read-back mismatch at offset %d (chunk %d)", e.Offset, e.Chunk)
}

// drive writes, flushes and verifies one drive, then records its result.
func (f *fanout) drive(ctx context.Context, r *run, digest string) {
	start := time.Now()
	err := f.writeAll(ctx, r)
	r.res.WriteSeconds = time.Since(start).Seconds()
	r.res.MBps = float64(r.res.BytesWritten) / max(r.res.WriteSeconds, 1e-9) / 1e6
	if err == nil {
		f.progress(r, PhaseSyncing, f.m.Size)
		if err = r.t.Dev.Sync(); err != nil {
			err = fmt.Errorf("flush: %w", err)
		}
	}
	if err == nil {
		start = time.Now()
		err = f.verify(ctx, r)
		r.res.VerifySeconds = time.Since(start).Seconds()
	}
	switch {
	case err == nil:
		r.res.Phase, r.res.VerifiedDigest = PhaseVerified, digest
	case ctx.Err() != nil:
		r.res.Phase, r.res.Err = PhaseCanceled, ctx.Err()
	default:
		r.res.Phase, r.res.Err = PhaseFailed, err
	}
	if r.res.Err != nil {
		r.res.Error = r.res.Err.Error()
	}
	f.progress(r, r.res.Phase, f.m.Size)
	f.w.log.Debug("drive done", "drive", r.t.ID, "path", r.t.Path, "result", r.res.Phase,
		"mb_per_s", fmt.Sprintf("%.1f", r.res.MBps), "own_stream", r.res.OwnStream, "error", r.res.Error)
}

// writeAll writes every chunk: those the shared stream queued for r, then,
// if r fell behind, the rest from a stream of its own.
func (f *fanout) writeAll(ctx context.Context, r *run) error {
	zeroed, err := f.zeroRuns(r)
	f.ready.Done()
	if err = f.drain(ctx, r, zeroed, err); err != nil {
		return err
	}
	if r.streamErr != nil {
		return r.streamErr
	}
	if from := r.detachedAt.Load(); from >= 0 {
		r.res.OwnStream = true
		f.w.log.Info("drive fell behind, streaming on its own", "drive", r.t.ID, "from_chunk", from)
		return f.w.cat.StreamFrom(ctx, f.m, int(from), func(_ int, ch catalog.Chunk, b *catalog.Buffer) error {
			return f.writeChunk(ctx, r, ch, b, zeroed)
		})
	}
	return nil
}

// drain writes what the shared stream queues for r until the queue closes.
// After a failure (or given one) it keeps draining, only to release buffers.
func (f *fanout) drain(ctx context.Context, r *run, zeroed bool, err error) error {
	if err != nil {
		r.failed.Store(true)
		f.signal()
	}
	for it := range r.queue {
		if err == nil {
			if err = f.writeChunk(ctx, r, it.ch, it.buf, zeroed); err != nil {
				r.failed.Store(true)
				f.signal()
			}
		}
		if it.buf != nil {
			it.buf.Release()
		}
	}
	return err
}

func (f *fanout) writeChunk(ctx context.Context, r *run, ch catalog.Chunk, b *catalog.Buffer, zeroed bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data := f.zeros[:ch.Length]
	if b != nil {
		data = b.Data
	}
	if b != nil || !zeroed {
		if _, err := r.t.Dev.WriteAt(data, ch.Offset); err != nil {
			return &IOError{Op: "write", Offset: ch.Offset, Err: err}
		}
	}
	r.res.BytesWritten += ch.Length
	r.done.Add(1)
	f.signal()
	f.progress(r, PhaseWriting, ch.Offset+ch.Length)
	return nil
}

// zeroRuns zeroes every run of zero chunks when asked to, and reports
// whether it did: a device that cannot zero gets zeros written instead.
func (f *fanout) zeroRuns(r *run) (bool, error) {
	if !f.opts.Discard {
		return false, nil
	}
	chunks := f.m.Chunks
	for i := 0; i < len(chunks); {
		if !chunks[i].Zero {
			i++
			continue
		}
		j := i
		for j < len(chunks) && chunks[j].Zero {
			j++
		}
		off, end := chunks[i].Offset, chunks[j-1].Offset+chunks[j-1].Length
		if err := r.t.Dev.Zero(off, end-off); err != nil {
			if errors.Is(err, ErrZeroUnsupported) {
				r.res.Zeros = "written (the device cannot zero ranges)"
				return false, nil
			}
			return false, fmt.Errorf("zero %d bytes at offset %d: %w", end-off, off, err)
		}
		i = j
	}
	r.res.Zeros = "zeroed"
	return true, nil
}

// verify reads every chunk back from the device and checks it against the
// manifest: zero chunks must read as zeros, others must have their BLAKE3.
func (f *fanout) verify(ctx context.Context, r *run) error {
	buf := catalog.AlignedBytes(int(f.m.ChunkSize))
	for i, ch := range f.m.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		data := buf[:ch.Length]
		if n, err := r.t.Dev.ReadAt(data, ch.Offset); n < len(data) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return &IOError{Op: "read back", Offset: ch.Offset + int64(n), Err: err}
		}
		if ch.Zero && !catalog.IsZero(data) || !ch.Zero && catalog.CheckSum(data) != ch.Check {
			return f.mismatch(ctx, i, data)
		}
		f.progress(r, PhaseVerifying, ch.Offset+ch.Length)
	}
	return nil
}

// mismatch finds the first byte of chunk i that differs from the image.
func (f *fanout) mismatch(ctx context.Context, i int, got []byte) error {
	want, err := f.w.cat.ReadChunk(ctx, f.m, i, nil)
	if err != nil {
		return fmt.Errorf("read-back of chunk %d does not match, and the chunk cannot be read to find where: %w", i, err)
	}
	off := f.m.Chunks[i].Offset
	for k := range got {
		if got[k] != want[k] {
			return &MismatchError{Offset: off + int64(k), Chunk: i}
		}
	}
	return &MismatchError{Offset: off, Chunk: i}
}
