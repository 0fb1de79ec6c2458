package catalog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrBadRef is returned for an image reference that does not parse or whose
// name, version or channel could escape the store's key space.
var ErrBadRef = errors.New("catalog: bad image reference")

// identPattern is the shape of a name, version or channel: it starts with
// a letter or digit and has no "/", so it can never leave its key prefix.
var identPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

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

// ParseRef parses NAME:VERSION, NAME:CHANNEL or NAME@sha256:HEX.
func ParseRef(s string) (Ref, error) {
	if name, digest, ok := strings.Cut(s, "@"); ok {
		if err := checkIdent("name", name); err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrBadRef, s, err)
		}
		if err := CheckDigest(digest); err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrBadRef, s, err)
		}
		return Ref{Name: name, Digest: digest}, nil
	}
	name, tag, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, fmt.Errorf("%w %q: want NAME:VERSION, NAME:CHANNEL or NAME@sha256:DIGEST", ErrBadRef, s)
	}
	if err := checkIdent("name", name); err != nil {
		return Ref{}, fmt.Errorf("%w %q: %v", ErrBadRef, s, err)
	}
	if err := checkIdent("version", tag); err != nil {
		return Ref{}, fmt.Errorf("%w %q: %v", ErrBadRef, s, err)
	}
	return Ref{Name: name, Tag: tag}, nil
}

func checkIdent(what, s string) error {
	if strings.Contains(s, "..") || !identPattern.MatchString(s) {
		return fmt.Errorf("%s %q must be 1-128 letters, digits, '.', '_', '+' or '-', start with a letter or digit, and not contain \"..\"", what, s)
	}
	return nil
}

// CheckDigest accepts only "sha256:" followed by 64 lowercase hex digits.
func CheckDigest(d string) error {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !isHexID(h) {
		return fmt.Errorf("digest %q is not sha256:<64 hex digits>", d)
	}
	return nil
}

// isHexID reports whether s is a 256-bit hash in lowercase hex.
func isHexID(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func versionKey(name, version string) string { return "refs/" + name + "/versions/" + version }
func channelKey(name, channel string) string { return "refs/" + name + "/channels/" + channel }
func manifestKey(digest string) string {
	return "manifests/sha256/" + strings.TrimPrefix(digest, "sha256:")
}
func chunkKey(id string) string { return "chunks/" + id[:2] + "/" + id }
