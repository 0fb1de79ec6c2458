package wim_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/imagefarm/imagefarm/storage/wim"
)

// tiny is the smallest useful fixture: one image, XPRESS.
var tiny = fixture{name: "tiny", images: []image{{"Tiny", "", []string{"--compress=XPRESS"}}}}

// Offsets of header fields, from the WIM format.
const (
	offHeaderSize = 8
	offFlags      = 16
	offPart       = 40
	offTotalParts = 42
	offImageCount = 44
	offXML        = 72 // resource header: size and flags, offset, original size
	offBootIndex  = 120
)

// patch returns a copy of b with f applied.
func patch(f func(b []byte) []byte) func([]byte) []byte {
	return func(base []byte) []byte { return f(bytes.Clone(base)) }
}

// put32 and put64 return a patch that writes v at off.
func put32(off int, v uint32) func([]byte) []byte {
	return patch(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b })
}

func put64(off int, v uint64) func([]byte) []byte {
	return patch(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b })
}

// constant returns data whatever the base WIM.
func constant(data []byte) func([]byte) []byte { return func([]byte) []byte { return data } }

// withXML returns a patch that appends doc as the WIM's XML resource.
func withXML(doc string) func([]byte) []byte {
	return withUTF16(utf16.Encode([]rune(doc)))
}

// withUTF16 returns a patch that appends units as the WIM's XML resource,
// UTF-16LE after a byte order mark, as Windows writes it.
func withUTF16(units []uint16) func([]byte) []byte {
	return patch(func(b []byte) []byte {
		off := len(b)
		b = append(b, 0xff, 0xfe)
		for _, u := range units {
			b = binary.LittleEndian.AppendUint16(b, u)
		}
		size := uint64(len(b) - off)
		binary.LittleEndian.PutUint64(b[offXML:], size|0x02<<56)
		binary.LittleEndian.PutUint64(b[offXML+8:], uint64(off))
		binary.LittleEndian.PutUint64(b[offXML+16:], size)
		return b
	})
}

// randomBytes returns n reproducible random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// TestReadNotWIM checks that input which is not a well-formed WIM yields
// an error wrapping ErrNotWIM that says what is wrong.
func TestReadNotWIM(t *testing.T) {
	base, err := os.ReadFile(tiny.build(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data func(base []byte) []byte
		want string
	}{
		{"empty", constant(nil), "0 bytes is too short for the 208-byte header"},
		{"text", constant([]byte(strings.Repeat("not a Windows image\n", 20))), `bad magic "not a Wi"`},
		{"zip", constant(append([]byte("PK\x03\x04"), make([]byte, 300)...)), `bad magic "PK\x03\x04\x00\x00\x00\x00"`},
		{"random", constant(randomBytes(4096)), "bad magic"},
		{"truncated header", patch(func(b []byte) []byte { return b[:100] }), "100 bytes is too short"},
		{"pipable without trailer", patch(func(b []byte) []byte { copy(b, "WLPWM"); return b }), "pipable WIM without its header at the end"},
		{"header size", put32(offHeaderSize, 100), "header size 100, want at least 208"},
		{"part beyond total", put32(offPart, 3|2<<16), "part 3 of 2"},
		{"part zero", put32(offPart, 0|1<<16), "part 0 of 1"},
		{"absurd image count", put32(offImageCount, 1<<31), "2147483648 images, more than the 10000 allowed"},
		{"more images in header", put32(offImageCount, 5), "header says 5 images, xml has 1"},
		{"more images in xml", put32(offImageCount, 0), "xml has more images than the 0 in the header"},
		{"boot index", put32(offBootIndex, 7), "boot index 7 is beyond the 1 images"},
		{"unknown compression", put32(offFlags, 0x2), "compressed, but of no known type (flags 0x2)"},
		{"huge xml", put64(offXML, 1<<40), "xml data is 1099511627776 bytes, more than the 8388608 allowed"},
		{"xml beyond end", put64(offXML+8, 1<<20), "beyond the end of the"},
		{"xml offset wraps", put64(offXML+8, 1<<64-2), "beyond the end of the"},
		{"xml compressed", patch(func(b []byte) []byte { b[offXML+7] |= 0x04; return b }), "xml data is compressed"},
		{"xml odd size", patch(func(b []byte) []byte { b[offXML]--; return b }), "odd size"},
		{"no xml", put64(offXML, 0), "no xml data for 1 images"},
		{"xml not xml", withXML("\x00\x01 binary"), "xml: XML syntax error"},
		{"xml only text", withXML("just text"), "xml has no WIM element"},
		{"xml wrong root", withXML("<IMAGES><IMAGE INDEX=\"1\"/></IMAGES>"), "xml root element is IMAGES, want WIM"},
		{"xml unterminated", withXML(`<WIM><IMAGE INDEX="1"><NAME>x</NAME>`), "unexpected EOF"},
		{"xml index gap", withXML(`<WIM><IMAGE INDEX="2"/></WIM>`), "xml image indexes are not 1 to 1 (found 2)"},
		{"xml index not a number", withXML(`<WIM><IMAGE INDEX="one"/></WIM>`), `xml image index "one"`},
		{"xml nested deep", withXML("<WIM>" + strings.Repeat("<X>", 100_000)), "nested more than 100 deep"},
		{"xml count not a number", withXML(`<WIM><IMAGE INDEX="1"><DIRCOUNT>many</DIRCOUNT></IMAGE></WIM>`), "xml IMAGE: strconv.ParseInt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data(base)
			info, err := wim.Read(bytes.NewReader(data), int64(len(data)))
			if !errors.Is(err, wim.ErrNotWIM) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Read = %+v, %v; want an error wrapping ErrNotWIM containing %q", info, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "wim: not a WIM file: ") {
				t.Errorf("Read error %q, want it to start with %q", err, "wim: not a WIM file: ")
			}
		})
	}
}

// failingReader fails every read that reaches past limit.
type failingReader struct {
	data  []byte
	limit int64
}

var errDisk = errors.New("disk on fire")

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.limit {
		return 0, errDisk
	}
	return bytes.NewReader(r.data).ReadAt(p, off)
}

// TestReadReaderError checks that a failing reader is reported as such, not
// as a file that is not a WIM.
func TestReadReaderError(t *testing.T) {
	data, err := os.ReadFile(tiny.build(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{0, 208, int64(len(data)) - 10} {
		r := failingReader{data: data, limit: limit}
		_, err := wim.Read(r, int64(len(data)))
		if !errors.Is(err, errDisk) || errors.Is(err, wim.ErrNotWIM) {
			t.Errorf("Read(reader failing past %d) = %v, want %v and not ErrNotWIM", limit, err, errDisk)
		}
	}
	short := io.NewSectionReader(bytes.NewReader(data), 0, 100)
	if _, err := wim.Read(short, int64(len(data))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Read(reader shorter than its size) = %v, want %v", err, io.ErrUnexpectedEOF)
	}
}
