package ident

import (
	"fmt"
	"strings"
)

// Limits of the catalog's names. A ref is a name and a version or channel,
// so MaxRefLen follows from the parts: any ref whose parts pass is short
// enough for every place a ref goes (store keys of at most 1024 bytes,
// file names of at most 255 bytes, the controller's KV keys and audit
// records, gRPC messages).
const (
	// MaxImageNameLen is the longest image name, in bytes.
	MaxImageNameLen = 128
	// MaxTagLen is the longest version or channel, in bytes.
	MaxTagLen = 128
	// MaxRefLen is the longest image ref: NAME:TAG with both at their
	// longest (longer than NAME@DIGEST, which is at most 200).
	MaxRefLen = MaxImageNameLen + 1 + MaxTagLen
)

// digestPrefix starts every digest: the algorithm, the only one.
const digestPrefix = "sha256:"

// catalogChars is the set of image names, versions and channels: each is
// a path element of a store key (refs/NAME/versions/VERSION), so it has no
// '/', never is "." or "..", and never starts with '.' (a hidden file in a
// file store) or '-' (an option to a command).
const catalogChars = "ASCII letters, digits, '.', '_', '+' or '-', starting with a letter or digit, without \"..\""

func catalogShape(s string) string {
	switch {
	case !isASCIIAlnum(rune(s[0])):
		return fmt.Sprintf("starts with %q", s[0])
	case strings.Contains(s, ".."):
		return `has ".."`
	}
	return ""
}

var (
	imageNameRule = rule{kind: "image name", min: 1, max: MaxImageNameLen, ok: oneOf("._+-"), chars: catalogChars,
		shape: catalogShape, hint: "name images such as win11 or demo-disk"}
	versionRule = rule{kind: "version", min: 1, max: MaxTagLen, ok: oneOf("._+-"), chars: catalogChars,
		shape: catalogShape, hint: "give versions such as 2026.11 or 1.0"}
	channelRule = rule{kind: "channel", min: 1, max: MaxTagLen, ok: oneOf("._+-"), chars: catalogChars,
		shape: catalogShape, hint: "name channels such as stable or pilot"}
)

// ImageName checks an image name: 1 to MaxImageNameLen ASCII letters,
// digits, '.', '_', '+' or '-', starting with a letter or digit, without
// "..". It is a path element of the catalog's store keys.
func ImageName(s string) error { return imageNameRule.check(s) }

// Version checks an image version: the rule of an image name, with
// MaxTagLen. It is a path element of the catalog's store keys.
func Version(s string) error { return versionRule.check(s) }

// Channel checks a channel: the rule of a version, since a ref's tag is
// either one.
func Channel(s string) error { return channelRule.check(s) }

// Ref checks an image ref: NAME:VERSION, NAME:CHANNEL or NAME@DIGEST, at
// most MaxRefLen bytes. See SplitRef.
func Ref(s string) error {
	_, _, _, err := SplitRef(s)
	return err
}

// SplitRef splits an image ref into its name and either its tag (a
// version or a channel) or its digest, checking each part. Its length is
// checked first, so a megabyte-long ref is refused without being parsed.
func SplitRef(s string) (name, tag, digest string, err error) {
	bad := func(problem string) error {
		return &Error{Kind: "image ref", Value: s, Problem: problem,
			Rule: fmt.Sprintf("NAME:VERSION, NAME:CHANNEL or NAME@sha256:DIGEST, at most %d bytes", MaxRefLen),
			Hint: "give one as `imagefarm image ls` lists them, such as win11:2026.11"}
	}
	if len(s) > MaxRefLen {
		return "", "", "", bad(fmt.Sprintf("is %d bytes long, the limit is %d", len(s), MaxRefLen))
	}
	if n, d, ok := strings.Cut(s, "@"); ok {
		if err := ImageName(n); err != nil {
			return "", "", "", err
		}
		if err := Digest(d); err != nil {
			return "", "", "", err
		}
		return n, "", d, nil
	}
	n, t, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", "", bad("has no ':'")
	}
	if err := ImageName(n); err != nil {
		return "", "", "", err
	}
	if err := tagRule.check(t); err != nil {
		return "", "", "", err
	}
	return n, t, "", nil
}

// tagRule is the rule of a ref's tag, which may be a version or a channel.
var tagRule = rule{kind: "version or channel", min: 1, max: MaxTagLen, ok: oneOf("._+-"), chars: catalogChars,
	shape: catalogShape, hint: "give a version such as 2026.11 or a channel such as stable"}

var (
	digestRule = rule{kind: "digest", min: 1, max: len(digestPrefix) + 64, ok: isVisibleASCII,
		desc: `"sha256:" and 64 lowercase hex digits`, shape: digestShape,
		hint: "copy it from `imagefarm image ls --json` or from a push's output"}
	chunkIDRule = rule{kind: "chunk id", min: 1, max: 64, ok: isLowerHex, desc: "64 lowercase hex digits (a SHA-256)",
		shape: func(s string) string { return lenShape(s, 64) }, hint: "the catalog names chunks by their hash"}
)

func isLowerHex(c rune) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func digestShape(s string) string {
	h, ok := strings.CutPrefix(s, digestPrefix)
	if !ok {
		return "does not start with " + digestPrefix
	}
	if i := strings.IndexFunc(h, func(c rune) bool { return !isLowerHex(c) }); i >= 0 {
		return fmt.Sprintf("has %q", h[i])
	}
	return lenShape(h, 64)
}

// lenShape says that s does not have exactly n bytes, if it does not.
func lenShape(s string, n int) string {
	if len(s) != n {
		return fmt.Sprintf("has %d hex digits, not %d", len(s), n)
	}
	return ""
}

// Digest checks a manifest digest: "sha256:" and 64 lowercase hex digits,
// the one form the catalog writes, so that two spellings never name one
// manifest.
func Digest(s string) error { return digestRule.check(s) }

// ChunkID checks the id of a catalog chunk: 64 lowercase hex digits, the
// SHA-256 of its content, which is also a store key's last element.
func ChunkID(s string) error { return chunkIDRule.check(s) }
