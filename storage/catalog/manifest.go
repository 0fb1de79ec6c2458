package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/storage/wim"
)

// SchemaVersion is the manifest schema this package writes and the newest
// it reads.
const SchemaVersion = 1

// Bounds on what a manifest may describe. Chunk sizes are multiples of 4 KiB
// so every chunk offset is aligned for O_DIRECT writes.
const (
	DefaultChunkSize = 4 << 20
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 64 << 20
	maxManifestBytes = 256 << 20
)

// ErrBadManifest is returned for a manifest that does not decode, does not
// match its digest, or describes an impossible blob.
var ErrBadManifest = errors.New("catalog: bad manifest")

// Kind says what a blob is, so the farm knows how to use it.
type Kind string

// The kinds of blob the catalog holds.
const (
	KindDisk    Kind = "disk"    // a raw disk image, written to a drive as is
	KindWIM     Kind = "wim"     // a Windows Imaging file (or one part of a split .swm)
	KindDrivers Kind = "drivers" // a driver bundle for one or more device models
	KindWinPE   Kind = "winpe"   // the files of a WinPE boot media folder
	KindPPKG    Kind = "ppkg"    // a Windows provisioning package
	KindFile    Kind = "file"    // anything else
	// KindBootEnv is a deploy environment that laptops netboot: a kernel
	// and an initramfs whose /init is imagefarm (imagefarm netboot
	// build-env, package deployenv).
	KindBootEnv Kind = "bootenv"
	// KindUpdate is a Windows update package (.msu or .cab) that DISM
	// adds to an applied image.
	KindUpdate Kind = "update"
	// KindHook is a folder of customisation scripts, each named after the
	// point of a deploy it runs at (package media).
	KindHook Kind = "hook"
	// KindRecovery is a manufacturer's recovery drive (its files, pushed
	// from a folder or a zip), laid onto a USB key as it is.
	KindRecovery Kind = "recovery"
)

// Kinds lists every valid Kind.
var Kinds = []Kind{KindDisk, KindWIM, KindDrivers, KindWinPE, KindPPKG, KindFile, KindBootEnv, KindUpdate, KindHook, KindRecovery}

// mediaFlags name the imagefarm media build flag that takes each kind that
// goes on USB media.
var mediaFlags = map[Kind]string{KindWIM: "--wim", KindWinPE: "--winpe", KindDrivers: "--drivers", KindPPKG: "--ppkg",
	KindUpdate: "--updates", KindHook: "--hook", KindRecovery: "--recovery"}

// Article returns the kind after "a" or "an", for messages.
func (k Kind) Article() string {
	if k != "" && strings.ContainsRune("aeiou", rune(k[0])) {
		return "an " + string(k)
	}
	return "a " + string(k)
}

// Folder reports whether blobs of kind k are folders of files, pushed and
// pulled as bundles (package bundle): WinPE media, driver bundles, deploy
// environments, hooks and recovery drives.
func (k Kind) Folder() bool {
	return k == KindWinPE || k == KindDrivers || k == KindBootEnv || k == KindHook || k == KindRecovery
}

// ErrNotForDrive is an image that is not written to drives: it is not a
// disk image, or it is empty.
var ErrNotForDrive = errors.New("catalog: image does not go on a drive")

// ForDrive returns ErrNotForDrive, saying why and what to do, unless the
// blob is an image a drive is written with: only a disk image (KindDisk)
// goes on a drive as it is. A WIM is applied to a disk by Windows (DISM,
// Setup) from boot media, and WinPE files, drivers and provisioning
// packages go on boot media too: imagefarm media build makes a disk image
// of them. An empty image would write nothing and "verify".
func (m *Manifest) ForDrive() error {
	ref := m.Name + ":" + m.Version
	switch {
	case mediaFlags[m.Kind] != "":
		return fmt.Errorf("image %s is %s, not a disk image: only disk images are written to drives; "+
			"build a USB key's disk image from it with imagefarm media build %s: %w", ref, m.Kind.Article(), mediaFlags[m.Kind], ErrNotForDrive)
	case m.Kind == KindBootEnv:
		return fmt.Errorf("image %s is a bootenv, not a disk image: only disk images are written to drives; "+
			"a deploy environment is what laptops netboot (imagefarm netboot serve serves it): %w", ref, ErrNotForDrive)
	case m.Kind != KindDisk:
		return fmt.Errorf("image %s is a %s, not a disk image: only disk images are written to drives; "+
			"push the drive's raw image with --kind disk: %w", ref, m.Kind, ErrNotForDrive)
	case m.Size == 0:
		return fmt.Errorf("image %s is empty (0 bytes): there is nothing to write to a drive: %w", ref, ErrNotForDrive)
	}
	return nil
}

// Manifest describes one blob: its chunks in order and what it is.
type Manifest struct {
	SchemaVersion int               `json:"schema_version"`
	Name          string            `json:"name"`
	Version       string            `json:"version"`
	Kind          Kind              `json:"kind"`
	Size          int64             `json:"size"`
	ChunkSize     int64             `json:"chunk_size"`
	Created       time.Time         `json:"created"`
	Models        []string          `json:"models,omitempty"` // exact device models this applies to
	Labels        map[string]string `json:"labels,omitempty"`
	Source        string            `json:"source,omitempty"` // base name of the pushed file
	WIM           *wim.Info         `json:"wim,omitempty"`
	Chunks        []Chunk           `json:"chunks"`
}

// Chunk is one piece of a blob. A zero chunk is all zero bytes and is not
// stored; any other chunk is stored under its ID.
type Chunk struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	ID     string `json:"id,omitempty"`     // hex SHA-256 of the uncompressed bytes: the chunk's name
	Check  string `json:"b3,omitempty"`     // hex BLAKE3-256 of the uncompressed bytes: what reads verify
	Stored int64  `json:"stored,omitempty"` // size of the compressed object
	Zero   bool   `json:"zero,omitempty"`
}

// AppliesTo reports whether the blob may be used for a device of the
// given model: it lists that exact model, or it lists none and is
// universal. An empty model (a use for no model in particular) takes only
// universal blobs.
func (m *Manifest) AppliesTo(model string) bool {
	return len(m.Models) == 0 || model != "" && slices.Contains(m.Models, model)
}

// StoredBytes is the sum of the compressed sizes of the blob's chunks,
// counting a chunk used twice twice.
func (m *Manifest) StoredBytes() int64 {
	var n int64
	for _, c := range m.Chunks {
		n += c.Stored
	}
	return n
}

// Encode returns the manifest's canonical bytes and their digest. The bytes
// are what is stored; the digest names them for ever.
func (m *Manifest) Encode() (data []byte, digest string, err error) {
	if err := m.Validate(); err != nil {
		return nil, "", err
	}
	data, err = json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("encode manifest: %w", err)
	}
	return data, Digest(data), nil
}

// Digest returns "sha256:<hex>" of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DecodeManifest checks that data has the digest want, then decodes and
// validates it.
func DecodeManifest(data []byte, want string) (*Manifest, error) {
	if got := Digest(data); got != want {
		return nil, fmt.Errorf("%w: content has digest %s, want %s", ErrBadManifest, got, want)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrBadManifest, want, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w %s: trailing data after the JSON object", ErrBadManifest, want)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", want, err)
	}
	return &m, nil
}

// Validate checks that the manifest describes a possible blob: chunks that
// tile [0, Size) in order, each no larger than ChunkSize, stored ones named
// by a SHA-256.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, args...))
	}
	switch {
	case m.SchemaVersion < 1 || m.SchemaVersion > SchemaVersion:
		return bad("schema version %d, this imagefarm reads 1 to %d (upgrade it)", m.SchemaVersion, SchemaVersion)
	case ident.ImageName(m.Name) != nil:
		return bad("%v", ident.ImageName(m.Name))
	case ident.Version(m.Version) != nil:
		return bad("%v", ident.Version(m.Version))
	case !slices.Contains(Kinds, m.Kind):
		return bad("unknown kind %q", m.Kind)
	case m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize || m.ChunkSize%4096 != 0:
		return bad("chunk size %d is not a multiple of 4096 from %d to %d", m.ChunkSize, MinChunkSize, MaxChunkSize)
	case m.Size < 0:
		return bad("negative size %d", m.Size)
	}
	return m.validateChunks()
}

func (m *Manifest) validateChunks() error {
	var off int64
	for i, c := range m.Chunks {
		switch {
		case c.Offset != off:
			return fmt.Errorf("%w: chunk %d at offset %d, want %d", ErrBadManifest, i, c.Offset, off)
		case c.Length <= 0 || c.Length > m.ChunkSize:
			return fmt.Errorf("%w: chunk %d has length %d, want 1 to %d", ErrBadManifest, i, c.Length, m.ChunkSize)
		case i < len(m.Chunks)-1 && c.Length != m.ChunkSize:
			return fmt.Errorf("%w: chunk %d has length %d; only the last chunk may be short", ErrBadManifest, i, c.Length)
		case c.Zero && (c.ID != "" || c.Check != "" || c.Stored != 0):
			return fmt.Errorf("%w: zero chunk %d has an id, check hash or stored size", ErrBadManifest, i)
		case !c.Zero && (ident.ChunkID(c.ID) != nil || ident.ChunkID(c.Check) != nil || c.Stored <= 0 || c.Stored > maxStored(c.Length)):
			return fmt.Errorf("%w: chunk %d has id %q, check hash %q and stored size %d", ErrBadManifest, i, c.ID, c.Check, c.Stored)
		}
		off += c.Length
	}
	if off != m.Size {
		return fmt.Errorf("%w: chunks cover %d bytes, size is %d", ErrBadManifest, off, m.Size)
	}
	return nil
}

// maxStored bounds a chunk's compressed size: zstd never grows incompressible
// data by more than a small fraction, so a larger claim is hostile.
func maxStored(length int64) int64 { return length + length/64 + 4096 }
