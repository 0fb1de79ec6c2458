package imager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/gpt"
)

// KeptRange is a range of a drive that a partition-aware write left alone,
// with its SHA-256 read from the device before anything was written and
// again after the write was verified: the proof that it was kept.
type KeptRange struct {
	Name         string `json:"name"` // "partition 4 (Windows recovery)"
	Start        int64  `json:"start"`
	End          int64  `json:"end"`
	SHA256Before string `json:"sha256_before"`
	SHA256After  string `json:"sha256_after,omitempty"`
}

// KeptChangedError says a range the write was to keep changed while the
// drive was written.
type KeptChangedError struct {
	Range KeptRange
}

func (e *KeptChangedError) Error() string {
	return fmt.Sprintf("%s (bytes %d-%d) changed while the drive was written: SHA-256 %s before, %s after",
		e.Range.Name, e.Range.Start, e.Range.End, e.Range.SHA256Before, e.Range.SHA256After)
}

// IsLayoutError reports whether err is a partition-aware write's refusal of
// its image or drive: no valid GPT, a selection the image does not have, a
// drive laid out otherwise, or a kept range that changed.
func IsLayoutError(err error) bool {
	var kc *KeptChangedError
	return errors.As(err, &kc) || errors.Is(err, gpt.ErrNotGPT) || errors.Is(err, gpt.ErrCorrupt) ||
		errors.Is(err, gpt.ErrMismatch) || errors.Is(err, gpt.ErrBadSelection)
}

// readLayout reads the image's partition table, when the write selects
// partitions, and the byte ranges of the image to write; before it the
// ranges are the whole image.
func (f *fanout) readLayout(ctx context.Context) error {
	f.ranges = []gpt.Range{{Start: 0, End: f.m.Size}}
	sel := f.opts.Partitions
	if sel.Whole() {
		return nil
	}
	if f.opts.CheckCapacity {
		return gpt.ErrWithCapacityCheck
	}
	image, err := gpt.Read(f.w.cat.ReaderAt(ctx, f.m), f.m.Size)
	if err == nil {
		f.ranges, err = sel.Ranges(image, f.m.Size)
	}
	if err != nil {
		return fmt.Errorf("partitions of image %s: %w", f.m.Name, err)
	}
	f.image = image
	return nil
}

// checkDriveLayout refuses r's drive unless the partitions the write
// selects are where the image has them, and hashes what it keeps.
func (f *fanout) checkDriveLayout(ctx context.Context, r *run) error {
	if f.image == nil {
		return nil
	}
	size, err := r.t.Dev.Size()
	if err != nil {
		return f.ioError(r, "read", 0, err)
	}
	dr := &deviceReader{dev: r.t.Dev}
	table, err := gpt.Read(dr, size)
	if err != nil {
		return fmt.Errorf("partition table of drive %s: %w", r.t.Path, err)
	}
	if err := gpt.Match(f.image, table, f.opts.Partitions.Named()); err != nil {
		return fmt.Errorf("drive %s is not laid out as the image for %s: %w", r.t.Path, f.opts.Partitions, err)
	}
	for _, k := range f.opts.Partitions.Kept(table) {
		sum, err := hashRange(ctx, dr, k.Range)
		if err != nil {
			return f.ioError(r, "read", k.Start, err)
		}
		r.res.Kept = append(r.res.Kept, KeptRange{Name: k.Name, Start: k.Start, End: k.End, SHA256Before: sum})
	}
	return nil
}

// checkKept hashes each kept range again, after the write was verified.
func (f *fanout) checkKept(ctx context.Context, r *run) error {
	dr := &deviceReader{dev: r.t.Dev}
	for i := range r.res.Kept {
		k := &r.res.Kept[i]
		sum, err := hashRange(ctx, dr, gpt.Range{Start: k.Start, End: k.End})
		if err != nil {
			return f.ioError(r, "read back", k.Start, err)
		}
		if k.SHA256After = sum; sum != k.SHA256Before {
			return &KeptChangedError{Range: *k}
		}
	}
	return nil
}

// spans is the part of chunk ch that the write writes: its intersections
// with the selected ranges.
func (f *fanout) spans(ch catalog.Chunk) []gpt.Range {
	var out []gpt.Range
	for _, r := range f.ranges {
		start, end := max(r.Start, ch.Offset), min(r.End, ch.Offset+ch.Length)
		if start < end {
			out = append(out, gpt.Range{Start: start, End: end})
		}
	}
	return out
}

// whole reports whether spans cover all of ch.
func whole(ch catalog.Chunk, spans []gpt.Range) bool {
	return len(spans) == 1 && spans[0].Start == ch.Offset && spans[0].End == ch.Offset+ch.Length
}

// hashRange is the hex SHA-256 of r's bytes on the device.
func hashRange(ctx context.Context, dr io.ReaderAt, r gpt.Range) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for at := r.Start; at < r.End; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := int(min(int64(len(buf)), r.End-at))
		if _, err := dr.ReadAt(buf[:n], at); err != nil {
			return "", err
		}
		h.Write(buf[:n])
		at += int64(n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// deviceReader reads any range of a device, through aligned windows, as
// O_DIRECT needs: partition tables and partitions start on sectors, not on
// the alignment the device's reads need.
type deviceReader struct {
	dev Device
	buf []byte
}

func (d *deviceReader) ReadAt(p []byte, off int64) (int, error) {
	if d.buf == nil {
		d.buf = catalog.AlignedBytes(1 << 20)
	}
	const a = catalog.Alignment
	n := 0
	for n < len(p) {
		at := off + int64(n)
		base := at / a * a
		want := min(int64(len(d.buf)), (at-base+int64(len(p)-n)+a-1)/a*a)
		got, err := d.dev.ReadAt(d.buf[:want], base)
		if got > int(at-base) {
			n += copy(p[n:], d.buf[at-base:got])
		}
		if n < len(p) && (err != nil || got < int(want)) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// verifySpans checks the spans of chunk i that were written, read back in
// got (the whole chunk as the device has it), against the image's bytes:
// the chunk's checksum covers bytes the write kept.
func (f *fanout) verifySpans(ctx context.Context, i int, got []byte, spans []gpt.Range) error {
	want, err := f.w.cat.ReadChunk(ctx, f.m, i, nil)
	if err != nil {
		return fmt.Errorf("read chunk %d to check what was written of it: %w", i, err)
	}
	off := f.m.Chunks[i].Offset
	for _, sp := range spans {
		a, b := sp.Start-off, sp.End-off
		if bytes.Equal(got[a:b], want[a:b]) {
			continue
		}
		for k := a; ; k++ {
			if got[k] != want[k] {
				return &MismatchError{Offset: off + k, Chunk: i}
			}
		}
	}
	return nil
}
