package imager

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// A counterfeit USB key reports a size its flash does not have: past its
// real size it drops writes (reads give zeros or old data) or wraps
// around, storing offset X at X mod its real size. The capacity probe
// finds that size as f3probe does: it writes sentinel blocks at offsets
// spread over the advertised size, reads them back from the device and
// looks for where they stop surviving. Each sentinel is derived from its
// own offset and a nonce drawn for the run, so a block read back says
// which offset wrote it, and nothing left on the key by an earlier run or
// by anything else passes for one.

const (
	// probeBlock is the size of one sentinel: O_DIRECT-aligned everywhere.
	probeBlock = catalog.Alignment
	// CapacityPrecision is how close to a drive's real size the probe
	// finds it, and the grid its probe points are laid on for drives up
	// to maxGridSteps times that.
	CapacityPrecision = 1 << 20
	// maxGridSteps bounds the grid: a larger drive gets a coarser one (32
	// MiB for 2 TB), so that the probe stays about 2*sqrt(maxGridSteps)
	// points, 2 MiB, however large the drive claims to be.
	maxGridSteps   = 1 << 16
	sentinelHeader = 32 // magic, nonce, offset; the rest is keyed noise
)

var sentinelMagic = [8]byte{'I', 'F', 'C', 'A', 'P', 'v', '1', 0}

// Capacity is what ProbeCapacity found on a drive.
type Capacity struct {
	Advertised   int64   `json:"advertised"`    // the size the drive reports
	Usable       int64   `json:"usable"`        // where sentinels stop surviving; Advertised for an honest drive
	Probes       int     `json:"probes"`        // sentinel blocks written
	BytesWritten int64   `json:"bytes_written"` // by the probe
	Seconds      float64 `json:"seconds"`
}

// CapacityError says a drive holds less than it advertises: a counterfeit
// key, or one failing. Nothing of the image was written to it.
type CapacityError struct {
	Advertised, Usable int64
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("advertises %s but holds only %s (%d bytes): counterfeit or failing key",
		humanize.Bytes(uint64(e.Advertised)), humanize.Bytes(uint64(max(e.Usable, 0))), e.Usable)
}

// ProbeCapacity writes sentinels across dev's advertised size, flushes
// them, reads them back and returns how much of it really holds data;
// with a *CapacityError when that is less than the advertised size. It
// overwrites what it probes: run it only on a drive about to be written.
// It writes about 2*sqrt(size/CapacityPrecision) blocks of 4 KiB (190 for
// 8 GiB, 500 for 64 GB, no more than about 520 for anything larger). progress, if set, gets
// the bytes of probe I/O done and the most there will be. An I/O error is
// an *IOError.
func ProbeCapacity(ctx context.Context, dev Device, progress func(done, total int64)) (Capacity, error) {
	start := time.Now()
	size, err := dev.Size()
	if err != nil {
		return Capacity{}, &IOError{Op: "capacity check", Offset: -1, Err: err}
	}
	p := &prober{dev: dev, cap: Capacity{Advertised: size, Usable: size}, progress: progress,
		buf: catalog.AlignedBytes(probeBlock), want: make([]byte, probeBlock)}
	usable, err := p.run(ctx)
	if err == nil {
		p.cap.Usable = usable
		if usable < size {
			err = &CapacityError{Advertised: size, Usable: usable}
		}
	}
	p.cap.Seconds = time.Since(start).Seconds()
	return p.cap, err
}

// run writes the sentinels, flushes them, reads them back and returns
// the usable size. They are written from the highest offset down, so
// that where a wrapped key maps two offsets to one place the lower one
// survives, and every point that fails lies past the real size R. The
// offset a point is found holding instead of its own is a multiple of R
// below it; probePoints makes one of those distances R itself, and the
// greatest common divisor of them all is then R. A key that drops writes
// past R fails at every point from R up, and the edge is bisected.
func (p *prober) run(ctx context.Context) (int64, error) {
	rand.Read(p.nonce[:]) // never fails
	points := probePoints(p.cap.Advertised)
	p.total = int64(2*len(points)+2*bits.Len64(uint64(p.cap.Advertised/CapacityPrecision))) * probeBlock
	for i := len(points) - 1; i >= 0; i-- {
		if err := p.write(ctx, points[i]); err != nil {
			return 0, err
		}
	}
	if err := p.sync(); err != nil {
		return 0, err
	}
	usable, err := p.readBack(ctx, points)
	p.report(p.total)
	return usable, err
}

// probePoints are the offsets ProbeCapacity writes, ascending: a
// baby-step giant-step set on a grid of CapacityPrecision steps (coarser
// past 64 GiB), every step below m steps and every m-th step up to the
// end, m = sqrt(steps). For any real size R on the grid, at least m steps
// below the advertised size, two of them lie exactly R apart, so a key
// that wraps at R shows it (flash wraps at a power of two, on the grid).
// Power-of-two offsets and the last block are added.
func probePoints(size int64) []int64 {
	last := (size - probeBlock) / probeBlock * probeBlock
	if last < 0 {
		return nil
	}
	step := int64(CapacityPrecision)
	for size/step > maxGridSteps {
		step *= 2
	}
	m := int64(math.Ceil(math.Sqrt(float64(size / step))))
	points := []int64{last}
	for j := range max(m, 1) { // baby steps
		points = append(points, j*step)
	}
	for off := m * step; m > 0 && off < size; off += m * step { // giant steps
		points = append(points, off)
	}
	for off := step; off < size; off *= 2 {
		points = append(points, off)
	}
	slices.Sort(points)
	points = slices.Compact(points)
	return slices.DeleteFunc(points, func(off int64) bool { return off > last })
}

// prober is one run of ProbeCapacity.
type prober struct {
	dev         Device
	nonce       [16]byte
	buf         []byte // aligned, for the device
	want        []byte
	cap         Capacity
	progress    func(done, total int64)
	done, total int64
}

// readBack reads every point, lowest first, and returns the usable size:
// the lowest failing point, lowered to the wrap size the aliases show, or
// bisected when that point lost its sentinel.
func (p *prober) readBack(ctx context.Context, points []int64) (int64, error) {
	var wrap int64 // gcd of the distances between aliased offsets
	fail, lost := int64(-1), false
	good := int64(0) // the highest point below fail that held
	for _, off := range points {
		owner, err := p.read(ctx, off)
		if err != nil {
			return 0, err
		}
		if owner >= 0 && owner != off {
			wrap = gcd(wrap, abs(off-owner))
		}
		switch {
		case owner == off && fail < 0:
			good = off
		case owner != off && fail < 0:
			fail, lost = off, owner < 0
		}
	}
	usable := p.cap.Advertised
	if fail >= 0 {
		usable = fail
	}
	if lost && fail > 0 {
		var err error
		if usable, err = p.bisect(ctx, good, fail); err != nil {
			return 0, err
		}
	}
	if wrap > 0 {
		usable = min(usable, wrap)
	}
	return usable, nil
}

// bisect narrows the edge between lo, which held its sentinel, and hi,
// which did not, to CapacityPrecision, and returns the failing end. It
// keeps to the grid where it can, so that a real size on it is found
// exactly.
func (p *prober) bisect(ctx context.Context, lo, hi int64) (int64, error) {
	for hi-lo > CapacityPrecision {
		half := lo + (hi-lo)/2
		mid := half / CapacityPrecision * CapacityPrecision
		if mid <= lo {
			mid = half / probeBlock * probeBlock
		}
		if err := p.write(ctx, mid); err != nil {
			return 0, err
		}
		if err := p.sync(); err != nil {
			return 0, err
		}
		owner, err := p.read(ctx, mid)
		if err != nil {
			return 0, err
		}
		if owner == mid {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}

func (p *prober) write(ctx context.Context, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.sentinel(off, p.buf)
	if _, err := p.dev.WriteAt(p.buf, off); err != nil {
		return &IOError{Op: "capacity check: write", Offset: off, Err: err}
	}
	p.cap.Probes++
	p.cap.BytesWritten += probeBlock
	p.report(p.done + probeBlock)
	return nil
}

func (p *prober) sync() error {
	if err := p.dev.Sync(); err != nil {
		return &IOError{Op: "capacity check: flush", Offset: -1, Err: err}
	}
	return nil
}

// read reads the block at off back and returns the offset whose sentinel
// it holds, or -1 when it holds none of this run's.
func (p *prober) read(ctx context.Context, off int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	clear(p.buf)
	if n, err := p.dev.ReadAt(p.buf, off); n < len(p.buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, &IOError{Op: "capacity check: read back", Offset: off + int64(n), Err: err}
	}
	p.report(p.done + probeBlock)
	if !bytes.Equal(p.buf[:8], sentinelMagic[:]) || !bytes.Equal(p.buf[8:24], p.nonce[:]) {
		return -1, nil
	}
	owner := int64(binary.BigEndian.Uint64(p.buf[24:32]))
	if p.sentinel(owner, p.want); !bytes.Equal(p.buf, p.want) {
		return -1, nil
	}
	return owner, nil
}

// sentinel fills b with the sentinel of off: a header naming the run and
// off, then noise keyed by both, so that no two blocks are alike and a
// block torn or partly stale does not pass.
func (p *prober) sentinel(off int64, b []byte) {
	copy(b, sentinelMagic[:])
	copy(b[8:], p.nonce[:])
	binary.BigEndian.PutUint64(b[24:], uint64(off))
	var seed [32]byte
	copy(seed[:], b[8:sentinelHeader])
	mrand.NewChaCha8(seed).Read(b[sentinelHeader:])
}

func (p *prober) report(done int64) {
	p.done = min(done, p.total)
	if p.progress != nil {
		p.progress(p.done, p.total)
	}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func abs(x int64) int64 { return max(x, -x) }
