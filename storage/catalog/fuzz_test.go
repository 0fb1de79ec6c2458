package catalog_test

import (
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// FuzzDecodeManifest feeds arbitrary bytes, under their own digest so the
// digest check passes, to the manifest decoder: it must reject or accept
// them without panicking, and what it accepts must be a valid manifest that
// encodes again.
func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"name":"a","version":"1","kind":"disk","size":5,"chunk_size":65536,"created":"2026-01-01T00:00:00Z","chunks":[{"offset":0,"length":5,"id":"` + strings.Repeat("ab", 32) + `","b3":"` + strings.Repeat("cd", 32) + `","stored":9}]}`))
	f.Add([]byte(`{"schema_version":1,"name":"a","version":"1","kind":"wim","size":0,"chunk_size":4194304,"created":"2026-01-01T00:00:00Z","chunks":[],"wim":{"images":[{"index":1}]}}`))
	f.Add([]byte(`{"schema_version":1,"name":"a","version":"1","kind":"disk","size":131072,"chunk_size":65536,"created":"2026-01-01T00:00:00Z","chunks":[{"offset":0,"length":65536,"zero":true},{"offset":65536,"length":65536,"zero":true}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := catalog.DecodeManifest(data, catalog.Digest(data))
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("DecodeManifest accepted a manifest that Validate refuses: %v", err)
		}
		var sum int64
		for _, c := range m.Chunks {
			sum += c.Length
		}
		if sum != m.Size {
			t.Fatalf("accepted manifest's chunks cover %d bytes, size %d", sum, m.Size)
		}
		if _, _, err := m.Encode(); err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
	})
}

// FuzzParseRef checks that whatever ParseRef accepts cannot leave the key
// space: no "/", no "..", no control characters, and it prints back as given.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"win11:2026.11", "a@sha256:" + strings.Repeat("0", 64), "../x:1", "a/b:1", "x:..", "x:\x00", ":", "@", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := catalog.ParseRef(s)
		if err != nil {
			return
		}
		for _, part := range []string{r.Name, r.Tag} {
			if strings.ContainsAny(part, "/\\") || strings.Contains(part, "..") || strings.ContainsFunc(part, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				t.Fatalf("ParseRef(%q) accepted %q", s, part)
			}
		}
		if r.String() != s {
			t.Fatalf("ParseRef(%q).String() = %q", s, r.String())
		}
	})
}
