package catalog

import "strings"

// ReadSet is every store key a reader of one image needs, and no other:
// its manifest, its signatures and its stored chunks. A server that lends
// its store to a reader it trusts with one image only (a netbooted device,
// which holds no store credentials) answers the keys it Allows.
type ReadSet struct {
	manifest, signatures string
	chunks               map[string]bool
}

// NewReadSet is the read set of the image m named digest.
func NewReadSet(m *Manifest, digest string) *ReadSet {
	r := &ReadSet{manifest: manifestKey(digest), signatures: signatureDir(digest), chunks: map[string]bool{}}
	for _, ch := range m.Chunks {
		if !ch.Zero && len(ch.ID) > 2 {
			r.chunks[chunkKey(ch.ID)] = true
		}
	}
	return r
}

// Allows reports whether key is one the image's reader reads.
func (r *ReadSet) Allows(key string) bool {
	if key == r.manifest || r.chunks[key] {
		return true
	}
	id, ok := strings.CutPrefix(key, r.signatures)
	return ok && id != "" && !strings.Contains(id, "/")
}

// AllowsList reports whether prefix is one the image's reader lists: its
// signatures' folder.
func (r *ReadSet) AllowsList(prefix string) bool { return prefix == r.signatures }
