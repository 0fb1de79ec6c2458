package wim_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/imagefarm/imagefarm/storage/wim"
)

// FuzzRead checks that Read never panics, that every error on well-behaved
// input wraps ErrNotWIM, and that what it accepts is consistent and can be
// written into a manifest. Seeds are WIMs that wimlib writes.
func FuzzRead(f *testing.F) {
	for _, fx := range []fixture{tiny, fixtures[0]} {
		data, err := os.ReadFile(fx.build(f)[0])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(compact(data))
		f.Add(data[:208])
	}
	f.Add([]byte{})
	f.Add(append([]byte("MSWIM\x00\x00\x00"), make([]byte, 200)...))
	f.Add(randomBytes(300))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := wim.Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, wim.ErrNotWIM) {
				t.Fatalf("Read = %v, want an error wrapping ErrNotWIM", err)
			}
			return
		}
		checkInfo(t, info)
	})
}

// checkInfo checks what must hold for any Info that Read returns.
func checkInfo(t *testing.T, info *wim.Info) {
	t.Helper()
	if len(info.Images) != info.ImageCount {
		t.Errorf("Read = %d images, image count %d", len(info.Images), info.ImageCount)
	}
	if info.Part < 1 || info.Part > info.TotalParts {
		t.Errorf("Read = part %d of %d", info.Part, info.TotalParts)
	}
	if info.BootIndex > info.ImageCount {
		t.Errorf("Read = boot index %d of %d images", info.BootIndex, info.ImageCount)
	}
	for i, img := range info.Images {
		if img.Index != i+1 {
			t.Errorf("Read image %d has index %d", i+1, img.Index)
		}
	}
	switch info.Compression {
	case "none", "xpress", "lzx", "lzms":
	default:
		t.Errorf("Read = compression %q", info.Compression)
	}
	if _, err := json.Marshal(info); err != nil {
		t.Errorf("json.Marshal(Read) = %v", err)
	}
}

// compact returns the header and XML of a WIM with its other resources
// left out: a small seed in which most mutations hit what Read parses.
func compact(data []byte) []byte {
	hdr := bytes.Clone(data[:208])
	le := binary.LittleEndian
	size := le.Uint64(hdr[offXML:]) & (1<<56 - 1)
	off := le.Uint64(hdr[offXML+8:])
	le.PutUint64(hdr[offXML+8:], 208)
	clear(hdr[48:72])   // lookup table
	clear(hdr[96:120])  // boot metadata
	clear(hdr[124:148]) // integrity table
	return append(hdr, data[off:off+size]...)
}
