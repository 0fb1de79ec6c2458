package testenv

import (
	"bytes"
	"io"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestFakeKeyWrapsAtTheBlockLayer writes a block through the fake key's
// loop device, with O_DIRECT, past its real size and finds it again at
// that offset mod the real size: the kernel's block device wraps.
func TestFakeKeyWrapsAtTheBlockLayer(t *testing.T) {
	RequireRoot(t)
	const size, real = 64 << 20, 16 << 20
	k := NewFakeKey(t, size, real)
	f, err := os.OpenFile(k.Path, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != size {
		t.Fatalf("%s ends at %d, %v; want %d", k.Path, end, err, size)
	}
	block, got := aligned(4096), aligned(4096)
	copy(block, bytes.Repeat([]byte("counterfeit "), 400))
	const at = 2*real + 8192
	if _, err := f.WriteAt(block, at); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{at, at % real} {
		if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, block) {
			t.Errorf("read at %d after writing at %d: %q..., %v; want the block written", off, int64(at), got[:16], err)
		}
	}
}

// aligned is n bytes aligned for O_DIRECT.
func aligned(n int) []byte {
	b := make([]byte, n+4096)
	skip := (4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)) % 4096
	return b[skip : skip+n]
}
