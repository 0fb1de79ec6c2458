package imager_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// loopDrive attaches a loop device of size bytes filled with garbage, so
// that nothing (zero chunks least of all) verifies by accident, and
// returns it as discovery sees it.
func loopDrive(t *testing.T, size int64) (*testenv.Loop, drive.Drive) {
	t.Helper()
	l := testenv.NewLoop(t, size)
	if err := os.WriteFile(l.Backing, bytes.Repeat([]byte{0xEE}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	drives, err := drive.Discover(drive.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := drive.Find(drives, l.Path)
	if err != nil {
		t.Fatal(err)
	}
	return l, d
}

// loopTarget attaches a loop device and opens it the way imagefarm write
// does: found by discovery, exclusive, O_DIRECT.
func loopTarget(t *testing.T, size int64) (imager.Target, *testenv.Loop) {
	t.Helper()
	l, d := loopDrive(t, size)
	f, direct, err := drive.OpenExclusive(d)
	if err != nil {
		t.Fatal(err)
	}
	if !direct {
		t.Fatalf("loop device %s opened without O_DIRECT", l.Path)
	}
	dev := imager.NewFileDevice(f, direct)
	t.Cleanup(func() { dev.Close() })
	return imager.Target{ID: d.ID, Path: l.Path, Dev: dev}, l
}

// TestLoopDevicesVerifiedFromTheDevice writes fresh garbage-filled loop
// devices with zeros written and with --discard, which must zero the zero
// chunks on the device (WRITE ZEROES) without writing them.
func TestLoopDevicesVerifiedFromTheDevice(t *testing.T) {
	testenv.RequireRoot(t)
	b := newBench(t, 24*chunkSize+4096+512, 2, 3, 7, 8, 9) // a tail that is not 4 KiB aligned
	if n := zeroChunks(b.m); n != 5 {
		t.Fatalf("the image has %d zero chunks, want 5", n)
	}
	want := testenv.SHA256(t, writeFile(t, b.image), -1)
	for _, discard := range []bool{false, true} {
		var ts []imager.Target
		var loops []*testenv.Loop
		var counts []*countingDevice
		for range 3 {
			tg, l := loopTarget(t, 32*chunkSize)
			c := &countingDevice{Device: tg.Dev}
			tg.Dev = c
			ts, loops, counts = append(ts, tg), append(loops, l), append(counts, c)
		}
		for i, r := range b.write(t, t.Context(), ts, imager.WriteOptions{Discard: discard}) {
			if r.Phase != imager.PhaseVerified || r.ReadBack != "direct" || discard && r.Zeros != "zeroed" {
				t.Errorf("discard=%v loop %d: %s, read back %s, zeros %s (%v); want verified with O_DIRECT read-back",
					discard, i, r.Phase, r.ReadBack, r.Zeros, r.Err)
			}
			if got := testenv.SHA256(t, loops[i].Path, b.m.Size); got != want {
				t.Errorf("discard=%v loop %d holds sha256 %s, the image %s", discard, i, got, want)
			}
			for _, ch := range b.m.Chunks {
				if got := counts[i].writes(ch.Offset); ch.Zero && discard && got != 0 {
					t.Errorf("discard loop %d: zero chunk at %d written %d times, want zeroed, not written", i, ch.Offset, got)
				}
			}
		}
	}
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := t.TempDir() + "/image"
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// staleCacheDevice, once the write is flushed, reads the loop device
// through the page cache (as blkid or a curious technician might), so the
// cache holds the image as written, then flips one byte in the loop's
// backing file: the device now differs from its cached pages.
type staleCacheDevice struct {
	imager.Device
	t    *testing.T
	loop *testenv.Loop
	at   int64
}

func (d staleCacheDevice) Sync() error {
	if err := d.Device.Sync(); err != nil {
		return err
	}
	cached := d.readBuffered()
	f, err := os.OpenFile(d.loop.Backing, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{cached ^ 0x10}, d.at); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if now := d.readBuffered(); now != cached {
		d.t.Errorf("%s: a buffered read sees the flipped byte: the cache is not stale and this test proves nothing", d.loop.Path)
	}
	return nil
}

// readBuffered reads the loop device through its page cache up to and
// including d.at, and returns the byte at d.at.
func (d staleCacheDevice) readBuffered() byte {
	f, err := os.Open(d.loop.Path)
	if err != nil {
		d.t.Error(err)
		return 0
	}
	defer f.Close()
	buf := make([]byte, d.at+1)
	if _, err := f.ReadAt(buf, 0); err != nil {
		d.t.Error(err)
	}
	return buf[d.at]
}

// TestReadBackComesFromTheDevice flips a byte on a loop device's medium
// behind its page cache, which holds the image as written: read-back must
// see the flip at its offset, and the drive not be verified. It does so
// for a drive opened with O_DIRECT and for one opened without it (the
// fallback where the kernel refuses O_DIRECT), whose read-back must drop
// the cached pages.
func TestReadBackComesFromTheDevice(t *testing.T) {
	testenv.RequireRoot(t)
	b := newBench(t, 16*chunkSize)
	const at = 6*chunkSize + 777
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct %v", direct), func(t *testing.T) {
			tg, l := loopTarget(t, 16*chunkSize)
			if !direct {
				tg.Dev.Close()
				f, err := os.OpenFile(l.Path, os.O_RDWR|unix.O_EXCL, 0)
				if err != nil {
					t.Fatal(err)
				}
				tg.Dev = imager.NewFileDevice(f, false)
				t.Cleanup(func() { tg.Dev.Close() })
			}
			tg.Dev = staleCacheDevice{Device: tg.Dev, t: t, loop: l, at: at}
			r := b.write(t, t.Context(), []imager.Target{tg}, imager.WriteOptions{})[0]
			var mm *imager.MismatchError
			if !errors.As(r.Err, &mm) || mm.Offset != at || r.Phase != imager.PhaseFailed || r.VerifiedDigest != "" {
				t.Errorf("loop with a byte flipped behind its cache (read back %s): %s %v, want a mismatch at offset %d, not verified",
					r.ReadBack, r.Phase, r.Err, at)
			}
		})
	}
}
