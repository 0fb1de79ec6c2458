package imager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// IOError is a drive's refusal to be written, zeroed, flushed or read.
type IOError struct {
	Op     string // "write", "zero", "flush" or "read back"
	Offset int64  // -1 for a flush, which has none
	Err    error
}

func (e *IOError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("%s at offset %d: %v", e.Op, e.Offset, e.Err)
}

func (e *IOError) Unwrap() error { return e.Err }

// RemovedError says a drive now ends before the image does: it was pulled
// (the kernel sets a pulled disk's size to 0) or it shrank. It is why an
// IOError happened, whatever errno the kernel gave. It names the device
// itself: a pull found while the drive waits for the stream (no transfer
// tried, so no errno naming it) says which drive as well as one a write met.
type RemovedError struct {
	Path string // the device
	End  int64  // the device's size now
	Size int64  // the image's size
	Err  error  // what the transfer met: io.ErrUnexpectedEOF for a short read, nil if none was tried
}

func (e *RemovedError) Error() string {
	msg := fmt.Sprintf("device %s ended at offset %d of %d: drive removed or shrunk", e.Path, e.End, e.Size)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RemovedError) Unwrap() error { return e.Err }

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
			err = f.ioError(r, "flush", -1, err)
		}
	}
	if err == nil {
		start = time.Now()
		err = f.verify(ctx, r)
		r.res.VerifySeconds = time.Since(start).Seconds()
	}
	if err == nil { // pulled as its last chunk was read: not verified
		if gone := f.removed(r, nil); gone != nil {
			err = &IOError{Op: "read back", Offset: f.m.Size, Err: gone}
		}
	}
	if err == nil {
		err = f.checkKept(ctx, r)
	}
	f.finish(ctx, r, digest, err)
}

// finish records how r's drive ended, err nil meaning verified, and
// reports it.
func (f *fanout) finish(ctx context.Context, r *run, digest string, err error) {
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
	if f.opts.Done != nil {
		f.opts.Done(r.index, r.res)
	}
	f.w.log.Debug("drive done", "drive", r.t.ID, "path", r.t.Path, "result", r.res.Phase,
		"mb_per_s", fmt.Sprintf("%.1f", r.res.MBps), "own_stream", r.res.OwnStream, "error", r.res.Error)
}

// writeAll writes every chunk: those the shared stream queued for r, then,
// if r fell behind, the rest from a stream of its own. A drive that fails
// leaves the stream at once: its result does not wait for the others.
func (f *fanout) writeAll(ctx context.Context, r *run) error {
	err := f.checkDriveLayout(ctx, r)
	if err == nil {
		err = f.checkCapacity(ctx, r)
	}
	var zeroed bool
	if err == nil {
		zeroed, err = f.zeroRuns(r)
	}
	f.ready.Done()
	if err == nil {
		err = f.drain(ctx, r, zeroed)
	}
	if err != nil {
		r.failed.Store(true) // produce queues nothing more for r
		f.signal()
		r.discard()
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

// drain writes what the shared stream queues for r until the queue closes
// or a write fails. While it waits for the stream it looks every
// presenceEvery whether the drive is still there: a drive pulled while the
// download stalls fails then, not at its next write.
func (f *fanout) drain(ctx context.Context, r *run, zeroed bool) error {
	tick := time.NewTicker(presenceEvery)
	defer tick.Stop()
	for {
		select {
		case it, ok := <-r.queue:
			if !ok {
				return nil
			}
			err := f.writeChunk(ctx, r, it.ch, it.buf, zeroed)
			it.release()
			if err != nil {
				return err
			}
		case <-tick.C:
			if gone := f.removed(r, nil); gone != nil {
				return &IOError{Op: "write", Offset: r.res.BytesWritten, Err: gone}
			}
		}
	}
}

// presenceEvery is how often a drive waiting for the stream checks that
// it is still there: a pulled disk's size drops to 0.
const presenceEvery = time.Second

// discard releases what a failed r's queue holds, without waiting for
// more: produce releases what it queued since, once it closes the queue.
func (r *run) discard() {
	for {
		select {
		case it, ok := <-r.queue:
			if !ok {
				return
			}
			it.release()
		default:
			return
		}
	}
}

func (f *fanout) writeChunk(ctx context.Context, r *run, ch catalog.Chunk, b *catalog.Buffer, zeroed bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data := f.zeros[:ch.Length]
	if b != nil {
		data = b.Data
	}
	for _, sp := range f.spans(ch) {
		if b != nil || !zeroed {
			if _, err := r.t.Dev.WriteAt(data[sp.Start-ch.Offset:sp.End-ch.Offset], sp.Start); err != nil {
				return f.ioError(r, "write", sp.Start, err)
			}
		}
		r.res.BytesWritten += sp.End - sp.Start
	}
	r.done.Add(1)
	f.signal()
	f.progress(r, PhaseWriting, ch.Offset+ch.Length)
	return nil
}

// checkCapacity probes r's drive when asked to, before anything of the
// image is written to it: a counterfeit drive fails here. The drives are
// probed at once, each on its own, before the stream starts.
func (f *fanout) checkCapacity(ctx context.Context, r *run) error {
	if !f.opts.CheckCapacity {
		return nil
	}
	c, err := ProbeCapacity(ctx, r.t.Dev, func(done, total int64) {
		if f.opts.Progress != nil {
			f.opts.Progress(r.index, PhaseChecking, done, total)
		}
	})
	r.res.Capacity = &c
	f.w.log.Debug("capacity checked", "drive", r.t.ID, "advertised", c.Advertised, "usable", c.Usable,
		"probes", c.Probes, "seconds", fmt.Sprintf("%.2f", c.Seconds))
	var ioe *IOError
	if errors.As(err, &ioe) {
		if gone := f.removed(r, ioe.Err); gone != nil {
			ioe.Err = gone
		}
	}
	return err
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
		run := catalog.Chunk{Offset: chunks[i].Offset, Length: chunks[j-1].Offset + chunks[j-1].Length - chunks[i].Offset}
		for _, sp := range f.spans(run) {
			if err := r.t.Dev.Zero(sp.Start, sp.End-sp.Start); err != nil {
				if errors.Is(err, ErrZeroUnsupported) {
					r.res.Zeros = "written (the device cannot zero ranges)"
					return false, nil
				}
				return false, f.ioError(r, "zero", sp.Start, err)
			}
		}
		i = j
	}
	r.res.Zeros = "zeroed"
	return true, nil
}

// verify reads every chunk back from the device and checks it against the
// manifest: zero chunks must read as zeros, others must have their BLAKE3.
// A short read (the device ends early) fails, naming where it ended.
func (f *fanout) verify(ctx context.Context, r *run) error {
	buf := catalog.AlignedBytes(int(f.m.ChunkSize))
	for i, ch := range f.m.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		spans := f.spans(ch)
		if len(spans) == 0 {
			continue
		}
		data := buf[:ch.Length]
		if n, err := r.t.Dev.ReadAt(data, ch.Offset); n < len(data) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return f.ioError(r, "read back", ch.Offset+int64(n), err)
		}
		if !whole(ch, spans) {
			if err := f.verifySpans(ctx, i, data, spans); err != nil {
				return err
			}
		} else if ch.Zero && !catalog.IsZero(data) || !ch.Zero && catalog.CheckSum(data) != ch.Check {
			return f.mismatch(ctx, i, data)
		}
		f.progress(r, PhaseVerifying, ch.Offset+ch.Length)
	}
	return nil
}

// ioError is r's refusal to op at off (-1: no offset). A drive that now
// ends before the image does was pulled or shrank: that is said, since
// the errno (ENOSPC, EIO, or none for a short read) does not say it.
func (f *fanout) ioError(r *run, op string, off int64, err error) error {
	if gone := f.removed(r, err); gone != nil {
		err = gone
	}
	return &IOError{Op: op, Offset: off, Err: err}
}

// removed returns a *RemovedError with err if r's drive now ends before
// the image does, else nil.
func (f *fanout) removed(r *run, err error) error {
	if end, serr := r.t.Dev.Size(); serr == nil && end < f.m.Size {
		return &RemovedError{Path: r.t.Path, End: end, Size: f.m.Size, Err: err}
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
