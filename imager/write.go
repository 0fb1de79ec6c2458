package imager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/gpt"
)

// Phase is where one drive's write is.
type Phase string

// The phases of a drive's write, in order; it ends verified, failed or canceled.
const (
	PhaseFetching  Phase = "fetching" // the image into the node cache, before any drive is written
	PhaseChecking  Phase = "checking" // its capacity, when asked to
	PhaseWriting   Phase = "writing"
	PhaseSyncing   Phase = "syncing"
	PhaseVerifying Phase = "verifying"
	PhaseVerified  Phase = "verified"
	PhaseFailed    Phase = "failed"
	PhaseCanceled  Phase = "canceled"
)

// DefaultWindow is how many chunks a drive may fall behind the fastest one
// before it stops sharing the decompressed stream and reads on its own.
const DefaultWindow = 8

// Target is one opened drive to write.
type Target struct {
	ID   string // the drive's id, for results and logs
	Path string
	Dev  Device
}

// WriteOptions tune Write.
type WriteOptions struct {
	// Discard zeroes each run of zero chunks with Device.Zero (BLKZEROOUT,
	// or a punched hole) and then skips them, instead of writing zeros.
	Discard bool
	// CheckCapacity probes each drive's real capacity (ProbeCapacity)
	// before writing it: a drive that holds less than it advertises fails
	// with a *CapacityError and nothing of the image is written to it.
	CheckCapacity bool
	// Window is DefaultWindow when 0.
	Window int
	// Progress, if set, is called with a drive's index in targets, its
	// phase and how many of the image's bytes that phase has done (for
	// PhaseChecking, of the probe's I/O). It is called from several
	// goroutines.
	Progress func(target int, phase Phase, done, total int64)
	// Partitions, unless it is the whole image, writes only part of a disk
	// image with a GPT (gpt.Selection): each drive must have the selected
	// partitions where the image has them, or it fails with nothing
	// written, and what the write keeps is hashed before and after
	// (Result.Kept). It excludes CheckCapacity.
	Partitions gpt.Selection
	// Done, if set, is called once for each drive with its index in
	// targets and its result as soon as that is final: a drive that fails
	// is reported then, not when the others are done. It is called from
	// several goroutines.
	Done func(target int, r Result)
}

// Result is what happened to one drive.
type Result struct {
	ID             string      `json:"id"`
	Path           string      `json:"path"`
	Phase          Phase       `json:"result"`
	BytesWritten   int64       `json:"bytes_written"`
	WriteSeconds   float64     `json:"write_seconds"`
	VerifySeconds  float64     `json:"verify_seconds"`
	MBps           float64     `json:"mb_per_s"` // write rate, 10^6 bytes a second
	VerifiedDigest string      `json:"verified_digest,omitempty"`
	ReadBack       string      `json:"read_back"`          // "direct" (O_DIRECT) or "buffered"
	Zeros          string      `json:"zeros"`              // "written", or "zeroed" with --discard
	OwnStream      bool        `json:"own_stream"`         // fell behind and decompressed on its own
	Capacity       *Capacity   `json:"capacity,omitempty"` // what the capacity check found, if one ran
	Kept           []KeptRange `json:"kept,omitempty"`     // what a partition-aware write kept, proven by hashes
	Error          string      `json:"error,omitempty"`    // why it failed
	Err            error       `json:"-"`
}

// Writer writes images from a catalog to drives.
type Writer struct {
	cat           *catalog.Catalog
	log           *slog.Logger
	trust         Trust
	whileFetching bool
}

// WriterConfig is what a Writer writes with.
type WriterConfig struct {
	// Catalog is where images are read from; it should have a node cache,
	// so that drives that stream on their own do not download again.
	Catalog *catalog.Catalog
	// Trust, when set, is what every image RunTasks runs is checked
	// against (signatures, rollbacks).
	Trust Trust
	// WriteWhileFetching starts writing drives while the image is still
	// being fetched, instead of fetching and checking all of it into the
	// node cache first. That saves the download's time on a cold cache, but
	// a chunk the store serves damaged is then found only after the chunks
	// before it have been written: the drives fail (never verified) but are
	// not left untouched.
	WriteWhileFetching bool
	// Log is where the Writer logs; slog.Default() when nil.
	Log *slog.Logger
}

// NewWriter returns a Writer with cfg.
func NewWriter(cfg WriterConfig) *Writer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Writer{cat: cfg.Catalog, log: cfg.Log, trust: cfg.Trust, whileFetching: cfg.WriteWhileFetching}
}

// Write writes the image m (named digest) to every target at once, then
// reads each back from the device and checks it. When the node cache can
// hold the image, every chunk is first fetched into it and checked, so that
// a chunk the store serves tampered fails every drive with nothing written
// (see prefetch). Each chunk is decompressed once and written to every
// drive that keeps pace; a drive that falls more than the window behind the
// fastest reads on its own. A drive that fails fails alone, at once. Write
// returns one Result per target, in order.
func (w *Writer) Write(ctx context.Context, m *catalog.Manifest, digest string, targets []Target, opts WriteOptions) []Result {
	if len(targets) == 0 {
		return nil
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	f := &fanout{w: w, m: m, opts: opts, wake: make(chan struct{}, 1), zeros: catalog.AlignedBytes(int(m.ChunkSize))}
	for i, t := range targets {
		r := &run{index: i, t: t, queue: make(chan item, opts.Window)}
		r.detachedAt.Store(-1)
		r.res = Result{ID: t.ID, Path: t.Path, Zeros: "written", ReadBack: "buffered"}
		if t.Dev.Direct() {
			r.res.ReadBack = "direct"
		}
		f.runs = append(f.runs, r)
	}
	err := f.readLayout(ctx)
	if err == nil {
		err = f.prefetch(ctx)
	}
	if err != nil {
		for _, r := range f.runs {
			f.finish(ctx, r, digest, err)
		}
	} else {
		f.write(ctx, digest)
	}
	results := make([]Result, len(f.runs))
	for i, r := range f.runs {
		results[i] = r.res
	}
	return results
}

// prefetch fetches and checks the whole image into the node cache before
// any drive is touched, when the cache can hold it. Without the room (or
// with WriteWhileFetching), the image streams, and a chunk that fails its
// check is found mid-write: the drives fail (never verified) holding the
// chunks before it. Fetching first gives up overlapping the download with
// the writes, which costs time only when the image is not in the cache.
func (f *fanout) prefetch(ctx context.Context) error {
	if f.w.whileFetching {
		return nil
	}
	start := time.Now()
	whole, err := f.w.cat.Prefetch(ctx, f.m, func(done int64) {
		for _, r := range f.runs {
			f.progress(r, PhaseFetching, done)
		}
	})
	if !whole {
		f.w.log.Warn("the node cache cannot hold this image: it streams, so a chunk the store serves damaged is found only after the chunks before it are written",
			"image_stored_bytes", f.m.StoredBytes())
		return nil
	}
	f.w.log.Debug("image fetched and checked", "seconds", fmt.Sprintf("%.2f", time.Since(start).Seconds()), "error", err)
	return err
}

// write runs every drive on the shared stream.
func (f *fanout) write(ctx context.Context, digest string) {
	var wg sync.WaitGroup
	f.ready.Add(len(f.runs))
	for _, r := range f.runs {
		wg.Go(func() { f.drive(ctx, r, digest) })
	}
	f.ready.Wait() // every drive has zeroed what it will skip: they start level
	f.produce(ctx)
	wg.Wait()
}

// item is one chunk on its way to a drive; buf is nil for a zero chunk.
type item struct {
	index int
	ch    catalog.Chunk
	buf   *catalog.Buffer
}

// release drops the reference the item held while queued.
func (it item) release() {
	if it.buf != nil {
		it.buf.Release()
	}
}

// run is one drive's part of a Write.
type run struct {
	index      int
	t          Target
	queue      chan item    // closed when r is detached, else when the stream ends
	done       atomic.Int64 // chunks written, in order
	detachedAt atomic.Int64 // -1 while sharing the stream, else the chunk to read on its own from
	failed     atomic.Bool
	streamErr  error // set before queue is closed when the shared stream failed
	// behindSince is when r was last seen falling a window behind the
	// fastest drive and not catching up; zero when it keeps pace.
	behindSince time.Time
	res         Result
}

func (r *run) attached() bool { return r.detachedAt.Load() < 0 && !r.failed.Load() }

// fanout shares one decompressed stream among the drives.
type fanout struct {
	w     *Writer
	m     *catalog.Manifest
	opts  WriteOptions
	runs  []*run
	wake  chan struct{}  // a drive made progress
	zeros []byte         // one chunk of zeros, aligned, shared read-only
	ready sync.WaitGroup // drives done preparing
	// ranges are the bytes of the image written, in order: all of it
	// unless opts.Partitions selects some (readLayout).
	ranges []gpt.Range
	image  *gpt.Table // the image's partition table, read when opts.Partitions selects some
}

var errNoneAttached = errors.New("imager: no drive shares the stream")

// produce streams the image once into the queues of the drives that keep
// pace, then closes the queues it has not closed on detaching a drive, and
// releases what is left in those of drives that failed.
func (f *fanout) produce(ctx context.Context) {
	err := f.w.cat.StreamFrom(ctx, f.m, 0, func(i int, ch catalog.Chunk, b *catalog.Buffer) error {
		accepted := 0
		for _, r := range f.runs {
			if r.attached() && f.offer(ctx, r, item{i, ch, b}) {
				accepted++
			}
		}
		if accepted == 0 {
			return errNoneAttached
		}
		return nil
	})
	for _, r := range f.runs {
		if r.detachedAt.Load() >= 0 {
			continue
		}
		if err != nil && !errors.Is(err, errNoneAttached) {
			r.streamErr = err // seen by the drive once it finds its queue closed
		}
		close(r.queue)
		if r.failed.Load() {
			r.discard()
		}
	}
}

// offer queues it for r, holding a reference to its buffer while queued.
func (f *fanout) offer(ctx context.Context, r *run, it item) bool {
	if it.buf != nil {
		it.buf.Retain()
	}
	if f.enqueue(ctx, r, it) {
		return true
	}
	it.release()
	return false
}

// enqueue waits while r's queue is full, unless r stays a whole window
// behind the fastest drive for lagGrace: then r is detached and its queue
// closed, and it reads the rest on its own as soon as it has written what
// it holds, so a slow drive holds nobody back for longer than that.
// The grace keeps a drive that was merely descheduled for a moment (zero
// chunks skipped with --discard go by in microseconds) on the shared stream.
func (f *fanout) enqueue(ctx context.Context, r *run, it item) bool {
	for {
		select {
		case r.queue <- it:
			if f.leaderDone()-r.done.Load() < int64(f.opts.Window) {
				r.behindSince = time.Time{} // caught up
			}
			return true
		default:
		}
		if r.failed.Load() {
			return false
		}
		wait := lagGrace
		if f.leaderDone()-r.done.Load() < int64(f.opts.Window) {
			r.behindSince = time.Time{}
		} else if r.behindSince.IsZero() {
			r.behindSince = time.Now()
		} else if wait -= time.Since(r.behindSince); wait <= 0 {
			r.detachedAt.Store(int64(it.index))
			close(r.queue)
			return false
		}
		select {
		case <-f.wake:
		case <-time.After(wait):
		case <-ctx.Done():
			return false
		}
	}
}

// lagGrace is how long a drive may stay a window behind before it is detached.
const lagGrace = 500 * time.Millisecond

func (f *fanout) leaderDone() int64 {
	var most int64
	for _, r := range f.runs {
		if !r.failed.Load() {
			most = max(most, r.done.Load())
		}
	}
	return most
}

func (f *fanout) progress(r *run, phase Phase, done int64) {
	if f.opts.Progress != nil {
		f.opts.Progress(r.index, phase, done, f.m.Size)
	}
}

func (f *fanout) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// String names a run in logs.
func (r *run) String() string { return fmt.Sprintf("%s (%s)", r.t.ID, r.t.Path) }
