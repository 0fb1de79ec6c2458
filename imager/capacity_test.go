package imager_test

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
)

// fakeMode is how a counterfeit key behaves past its real size.
type fakeMode int

const (
	wraps      fakeMode = iota // offset X is stored at X mod the real size
	dropsZeros                 // writes are dropped, reads give zeros
	dropsStale                 // writes are dropped, reads give what X mod the real size holds
)

func (m fakeMode) String() string {
	return [...]string{"wraps", "drops, reads zeros", "drops, reads stale"}[m]
}

// fakeKey is a counterfeit USB key at the block layer: it advertises
// more than the device under it, which holds its real size, and past that
// it wraps around or drops writes, as the controllers of fake keys do.
// Zero is the real device's: the probe never zeroes.
type fakeKey struct {
	imager.Device
	real, advertised int64
	mode             fakeMode
}

func (k *fakeKey) Size() (int64, error) { return k.advertised, nil }

func (k *fakeKey) WriteAt(p []byte, off int64) (int, error) {
	return k.each(p, off, func(q []byte, at int64) error {
		if at >= k.real && k.mode != wraps {
			return nil
		}
		_, err := k.Device.WriteAt(q, at%k.real)
		return err
	})
}

func (k *fakeKey) ReadAt(p []byte, off int64) (int, error) {
	return k.each(p, off, func(q []byte, at int64) error {
		if at >= k.real && k.mode == dropsZeros {
			clear(q)
			return nil
		}
		_, err := k.Device.ReadAt(q, at%k.real)
		return err
	})
}

// each calls fn on the pieces of [off, off+len(p)) that do not cross a
// multiple of the real size, each with its offset as advertised.
func (k *fakeKey) each(p []byte, off int64, fn func(q []byte, at int64) error) (int, error) {
	if off+int64(len(p)) > k.advertised {
		return 0, io.EOF
	}
	for n := 0; n < len(p); {
		at := off + int64(n)
		m := min(len(p)-n, int(k.real-at%k.real))
		if err := fn(p[n:n+m], at); err != nil {
			return n, err
		}
		n += m
	}
	return len(p), nil
}

// sparseDevice is a virtual drive of size bytes that takes no space.
func sparseDevice(t *testing.T, size int64) imager.Device {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "drive.img"))
	if err == nil {
		err = f.Truncate(size)
	}
	if err != nil {
		t.Fatal(err)
	}
	dev := imager.NewFileDevice(f, false)
	t.Cleanup(func() { dev.Close() })
	return dev
}

const (
	miB = int64(1) << 20
	giB = int64(1) << 30
)

// maxProbeBytes bounds what a probe may write, however large the drive.
const maxProbeBytes = 4 * miB

func TestProbeCapacityFindsTheRealSize(t *testing.T) {
	tests := []struct {
		advertised, real int64 // real 0: an honest drive
		mode             fakeMode
	}{
		{advertised: giB},
		{advertised: giB + 3*4096 + 512}, // its end is not on the probe's grid
		{advertised: 64e9},
		{advertised: giB, real: 64 * miB, mode: wraps},
		{advertised: giB, real: 300 * miB, mode: wraps},
		{advertised: giB, real: 960 * miB, mode: wraps}, // 64 MiB short
		{advertised: 64e9, real: 8 * giB, mode: wraps},
		{advertised: 64e9, real: 7*giB + 512*miB, mode: wraps},
		{advertised: 2e12, real: 16 * giB, mode: wraps}, // on a 32 MiB grid
		{advertised: giB, real: 256 * miB, mode: dropsZeros},
		{advertised: giB, real: 1000*miB + 12*1024, mode: dropsZeros}, // off the grid, 24 MiB short
		{advertised: 64e9, real: 8 * giB, mode: dropsZeros},
		{advertised: 16 * giB, real: 3 * giB, mode: dropsStale},
		{advertised: 64e9, real: 5*giB + 123*miB + 4096, mode: dropsStale},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("advertised %d honest", tc.advertised)
		if tc.real > 0 {
			name = fmt.Sprintf("advertised %d real %d %s", tc.advertised, tc.real, tc.mode)
		}
		t.Run(name, func(t *testing.T) {
			dev := sparseDevice(t, cmp.Or(tc.real, tc.advertised))
			if tc.real > 0 {
				dev = &fakeKey{Device: dev, real: tc.real, advertised: tc.advertised, mode: tc.mode}
			}
			c, err := imager.ProbeCapacity(t.Context(), dev, nil)
			t.Logf("%+v", c)
			if c.BytesWritten > maxProbeBytes || c.Advertised != tc.advertised {
				t.Errorf("ProbeCapacity = %+v: want %d advertised, at most %d bytes written", c, tc.advertised, maxProbeBytes)
			}
			if tc.real == 0 {
				if err != nil || c.Usable != tc.advertised {
					t.Errorf("ProbeCapacity(honest %d) = usable %d, %v; want all of it, no error", tc.advertised, c.Usable, err)
				}
				return
			}
			// A wrap shows the real size exactly; dropped writes are
			// bisected to the precision, exactly on its grid.
			high := tc.real + 1
			if tc.mode != wraps && tc.real%imager.CapacityPrecision != 0 {
				high = tc.real + imager.CapacityPrecision
			}
			var fake *imager.CapacityError
			if c.Usable < tc.real || c.Usable >= high || !errors.As(err, &fake) || fake.Usable != c.Usable ||
				!strings.Contains(err.Error(), "but holds only") {
				t.Errorf("ProbeCapacity(fake) = usable %d, %v; want usable in [%d, %d) and a *CapacityError", c.Usable, err, tc.real, high)
			}
		})
	}
}

// TestProbeCapacityFindsEveryWrap wraps a 128 MiB key at every real size
// on the probe's grid up to where its guarantee ends (the last 12 MiB,
// m steps of the grid).
func TestProbeCapacityFindsEveryWrap(t *testing.T) {
	const advertised = 128 * miB
	for real := miB; real <= advertised-11*miB; real += miB {
		dev := &fakeKey{Device: sparseDevice(t, real), real: real, advertised: advertised, mode: wraps}
		c, err := imager.ProbeCapacity(t.Context(), dev, nil)
		if c.Usable != real || err == nil {
			t.Errorf("ProbeCapacity(128 MiB key wrapping at %d) = usable %d, %v; want %d", real, c.Usable, err, real)
		}
	}
}

func TestCapacityErrorMessage(t *testing.T) {
	got := (&imager.CapacityError{Advertised: 64e9, Usable: 8 * giB}).Error()
	if want := "advertises 64 GB but holds only 8.6 GB (8589934592 bytes): counterfeit or failing key"; got != want {
		t.Errorf("CapacityError = %q, want %q", got, want)
	}
}
