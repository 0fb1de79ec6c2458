package catalog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// ErrBadRef is returned for an image reference that does not parse or whose
// name, version or channel could escape the store's key space. The rules
// are internal/ident's, which every component shares.
var ErrBadRef = errors.New("catalog: bad image reference")

// Ref names an image: Name with a Tag (a version or a channel) or a Digest.
type Ref struct {
	Name   string
	Tag    string // version or channel; empty when Digest is set
	Digest string // "sha256:<hex>"; empty when Tag is set
}

func (r Ref) String() string {
	if r.Digest != "" {
		return r.Name + "@" + r.Digest
	}
	return r.Name + ":" + r.Tag
}

// ParseRef parses NAME:VERSION, NAME:CHANNEL or NAME@sha256:HEX, as
// ident.SplitRef checks them. Errors wrap ErrBadRef and ident.ErrInvalid.
func ParseRef(s string) (Ref, error) {
	name, tag, digest, err := ident.SplitRef(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w: %w", ErrBadRef, err)
	}
	return Ref{Name: name, Tag: tag, Digest: digest}, nil
}

func versionKey(name, version string) string { return "refs/" + name + "/versions/" + version }
func channelKey(name, channel string) string { return "refs/" + name + "/channels/" + channel }
func manifestKey(digest string) string {
	return "manifests/sha256/" + strings.TrimPrefix(digest, "sha256:")
}
func chunkKey(id string) string { return "chunks/" + id[:2] + "/" + id }
