package wim_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/imagefarm/imagefarm/storage/wim"
)

// TestReadXML checks XML that wimlib does not write but Windows tools or
// other writers might: a declaration naming UTF-16, images out of order,
// unknown elements, hex without "0x", an unknown architecture and times
// that cannot be written as JSON.
func TestReadXML(t *testing.T) {
	base, err := os.ReadFile(tiny.build(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	const doc = `<?xml version="1.0" encoding="UTF-16"?>
<WIM>
  <TOTALBYTES>1234</TOTALBYTES>
  <IMAGE INDEX="2"><NAME>Second</NAME>
    <WINDOWS><ARCH>7</ARCH><VERSION><MAJOR>6</MAJOR><MINOR>3</MINOR></VERSION></WINDOWS>
    <CREATIONTIME><HIGHPART>01D9E5F4</HIGHPART><LOWPART>0x12345678</LOWPART></CREATIONTIME>
  </IMAGE>
  <IMAGE INDEX="3"><CREATIONTIME><HIGHPART>0xFFFFFFFF</HIGHPART><LOWPART>0x0</LOWPART></CREATIONTIME></IMAGE>
  <IMAGE INDEX="1"><NAME>First &amp; 🪟</NAME><UNKNOWN><DEEP>x</DEEP></UNKNOWN></IMAGE>
</WIM>`
	data := withXML(doc)(base)
	binary.LittleEndian.PutUint32(data[offImageCount:], 3)
	got, err := wim.Read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	// 0x01D9E5F412345678 ticks of 100 ns after 1601, worked out apart.
	created := time.Date(2023, 9, 13, 3, 40, 42, 434111200, time.UTC)
	want := []wim.Image{
		{Index: 1, Name: "First & 🪟"},
		{Index: 2, Name: "Second", Arch: "7", Build: "6.3.0.0", CreatedAt: created},
		{Index: 3},
	}
	if got.TotalBytes != 1234 || !reflect.DeepEqual(got.Images, want) {
		t.Errorf("Read = total bytes %d, images %s; want 1234, %s", got.TotalBytes, toJSON(t, got.Images), toJSON(t, want))
	}
}

// TestReadLongName checks a name long enough that surrogate pairs straddle
// the buffers of the UTF-16 decoder, with an unpaired surrogate at its end.
func TestReadLongName(t *testing.T) {
	base, err := os.ReadFile(tiny.build(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("🪟a", 50_000)
	doc := utf16.Encode([]rune(`<WIM><IMAGE INDEX="1"><NAME>` + name))
	doc = append(doc, 0xd83d) // a high surrogate with no low one
	doc = append(doc, utf16.Encode([]rune("</NAME></IMAGE></WIM>"))...)
	data := withUTF16(doc)(base)
	got, err := wim.Read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	if want := name + "\uFFFD"; got.Images[0].Name != want {
		t.Errorf("Read name = %d bytes, want %d bytes of 🪟a and U+FFFD", len(got.Images[0].Name), len(want))
	}
}

// TestInfoJSON checks that Info, which image manifests embed, survives JSON
// with snake_case keys.
func TestInfoJSON(t *testing.T) {
	info := readFile(t, fixtures[0].build(t)[0])
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"image_count":3`, `"total_parts":1`, `"chunk_size":32768`, `"display_name":`, `"created_at":`, `"default_language":"en-US"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("json.Marshal(Info) = %s, want it to contain %s", b, key)
		}
	}
	var back wim.Info
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, info) {
		t.Errorf("Info after JSON = %s, want %s", toJSON(t, &back), toJSON(t, info))
	}
}
