package wim

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotWIM is wrapped by every error Read returns for input that is not a
// well-formed WIM file; the wrapping error says what is wrong with it.
var ErrNotWIM = errors.New("wim: not a WIM file")

// Info is the metadata of one WIM file, or of one part of a split WIM.
// It is embedded in image manifests as JSON.
type Info struct {
	// Version is the header's format version: 0x10d00 for ordinary WIMs,
	// 0xe00 for solid (ESD-style) ones.
	Version uint32 `json:"version,omitempty"`
	// Compression is "none", "xpress", "lzx" or "lzms".
	Compression string `json:"compression,omitempty"`
	ChunkSize   uint32 `json:"chunk_size,omitempty"`
	// GUID is the header's 16 GUID bytes in file order, as hex; all parts
	// of a split WIM share it.
	GUID string `json:"guid,omitempty"`
	// Part is this file's number among the TotalParts of a split WIM;
	// both are 1 for a WIM that is not split.
	Part       int `json:"part,omitempty"`
	TotalParts int `json:"total_parts,omitempty"`
	ImageCount int `json:"image_count,omitempty"`
	// BootIndex is the index of the bootable image, 0 if there is none.
	BootIndex int `json:"boot_index,omitempty"`
	// TotalBytes is the size the XML records for the whole WIM. Writers
	// record the offset of the XML data, so for a split WIM it is the size
	// of the WIM before it was split, not of this part.
	TotalBytes int64   `json:"total_bytes,omitempty"`
	Images     []Image `json:"images,omitempty"`
}

// Image is the XML metadata of one image in a WIM.
type Image struct {
	Index       int    `json:"index,omitempty"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	// Flags is the free-form FLAGS element; Windows puts the edition there.
	Flags string `json:"flags,omitempty"`
	// Edition is WINDOWS/EDITIONID, such as "Professional".
	Edition string `json:"edition,omitempty"`
	// Arch is "x86", "arm", "ia64", "amd64" or "arm64", or the raw
	// WINDOWS/ARCH code when it is none of those.
	Arch string `json:"arch,omitempty"`
	// Build is MAJOR.MINOR.BUILD.SPBUILD from WINDOWS/VERSION, such as
	// "10.0.22631.2861"; missing parts count as 0.
	Build            string    `json:"build,omitempty"`
	ProductName      string    `json:"product_name,omitempty"`
	InstallationType string    `json:"installation_type,omitempty"`
	Languages        []string  `json:"languages,omitempty"`
	DefaultLanguage  string    `json:"default_language,omitempty"`
	DirCount         int64     `json:"dir_count,omitempty"`
	FileCount        int64     `json:"file_count,omitempty"`
	TotalBytes       int64     `json:"total_bytes,omitempty"`
	CreatedAt        time.Time `json:"created_at,omitzero"`
}

const (
	headerSize = 208
	// maxXMLSize bounds the XML resource, which real WIMs keep to tens of
	// KiB. encoding/xml can allocate some 15 times the size of hostile XML
	// (an element with millions of attributes), so the bound keeps Read
	// under about 128 MiB whatever the file says.
	maxXMLSize = 8 << 20
	// maxImages bounds the image count for the same reason; Windows media
	// carry a dozen images at most.
	maxImages = 10000
)

var (
	magicWIM = []byte("MSWIM\x00\x00\x00")
	// magicPipable marks wimlib's pipable WIMs, whose complete header is
	// the last headerSize bytes of the file.
	magicPipable = []byte("WLPWM\x00\x00\x00")
)

// Header flags, as in wimlib's header.h.
const (
	flagCompression = 0x00000002
	flagXPRESS      = 0x00020000
	flagLZX         = 0x00040000
	flagLZMS        = 0x00080000
)

// resourceCompressed is the resource header flag of a compressed resource.
const resourceCompressed = 0x04

// resource is an on-disk resource header: where a resource lies in the file.
type resource struct {
	size   uint64 // bytes in the file, 56 bits on disk
	flags  byte
	offset uint64
}

// header is the part of the WIM header that Read reports or needs.
type header struct {
	size        uint32
	version     uint32
	flags       uint32
	chunkSize   uint32
	guid        [16]byte
	part, parts uint16
	imageCount  uint32
	xml         resource
	bootIndex   uint32
}

// Read reads the header and XML metadata of the WIM file of the given size
// behind r. Input that is not a well-formed WIM yields an error wrapping
// ErrNotWIM; errors from r are returned as they are, with context.
func Read(r io.ReaderAt, size int64) (*Info, error) {
	h, err := readHeader(r, size)
	if err != nil {
		return nil, err
	}
	info, err := h.info()
	if err != nil {
		return nil, err
	}
	doc, err := readXML(r, size, h)
	if err != nil {
		return nil, err
	}
	info.TotalBytes = doc.TotalBytes
	if info.Images, err = doc.images(); err != nil {
		return nil, err
	}
	return info, nil
}

// readHeader reads and checks the header, from the end of the file for a
// pipable WIM.
func readHeader(r io.ReaderAt, size int64) (*header, error) {
	if size < headerSize {
		return nil, notWIM("%d bytes is too short for the %d-byte header", max(size, 0), headerSize)
	}
	b := make([]byte, headerSize)
	if err := readFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if bytes.Equal(b[:8], magicPipable) {
		if err := readFull(r, b, size-headerSize); err != nil {
			return nil, fmt.Errorf("read pipable header: %w", err)
		}
		if !bytes.Equal(b[:8], magicPipable) {
			return nil, notWIM("pipable WIM without its header at the end")
		}
	} else if !bytes.Equal(b[:8], magicWIM) {
		return nil, notWIM("bad magic %q", b[:8])
	}
	return parseHeader(b)
}

// parseHeader decodes a header and checks the fields that Read relies on.
func parseHeader(b []byte) (*header, error) {
	le := binary.LittleEndian
	h := &header{
		size:       le.Uint32(b[8:]),
		version:    le.Uint32(b[12:]),
		flags:      le.Uint32(b[16:]),
		chunkSize:  le.Uint32(b[20:]),
		part:       le.Uint16(b[40:]),
		parts:      le.Uint16(b[42:]),
		imageCount: le.Uint32(b[44:]),
		xml:        parseResource(b[72:96]),
		bootIndex:  le.Uint32(b[120:]),
	}
	copy(h.guid[:], b[24:40])
	switch {
	case h.size < headerSize:
		return nil, notWIM("header size %d, want at least %d", h.size, headerSize)
	case h.part == 0 || h.part > h.parts:
		return nil, notWIM("part %d of %d", h.part, h.parts)
	case h.imageCount > maxImages:
		return nil, notWIM("%d images, more than the %d allowed", h.imageCount, maxImages)
	case h.bootIndex > h.imageCount:
		return nil, notWIM("boot index %d is beyond the %d images", h.bootIndex, h.imageCount)
	}
	return h, nil
}

// parseResource decodes a 24-byte resource header.
func parseResource(b []byte) resource {
	sizeAndFlags := binary.LittleEndian.Uint64(b)
	return resource{
		size:   sizeAndFlags & (1<<56 - 1),
		flags:  byte(sizeAndFlags >> 56),
		offset: binary.LittleEndian.Uint64(b[8:]),
	}
}

// info returns the header's part of Info.
func (h *header) info() (*Info, error) {
	compression, err := h.compression()
	if err != nil {
		return nil, err
	}
	return &Info{
		Version:     h.version,
		Compression: compression,
		ChunkSize:   h.chunkSize,
		GUID:        hex.EncodeToString(h.guid[:]),
		Part:        int(h.part),
		TotalParts:  int(h.parts),
		ImageCount:  int(h.imageCount),
		BootIndex:   int(h.bootIndex),
	}, nil
}

// compression names the compression type in the header flags, checked in
// the same order as wimlib when more than one type flag is set.
func (h *header) compression() (string, error) {
	switch {
	case h.flags&flagCompression == 0:
		return "none", nil
	case h.flags&flagXPRESS != 0:
		return "xpress", nil
	case h.flags&flagLZX != 0:
		return "lzx", nil
	case h.flags&flagLZMS != 0:
		return "lzms", nil
	}
	return "", notWIM("compressed, but of no known type (flags %#x)", h.flags)
}

// readXML checks where the XML resource lies and decodes it.
func readXML(r io.ReaderAt, size int64, h *header) (*xmlWIM, error) {
	res := h.xml
	switch {
	case res.flags&resourceCompressed != 0:
		return nil, notWIM("xml data is compressed")
	case res.size > maxXMLSize:
		return nil, notWIM("xml data is %d bytes, more than the %d allowed", res.size, maxXMLSize)
	case res.offset > uint64(size) || res.size > uint64(size)-res.offset:
		return nil, notWIM("xml data at %d+%d is beyond the end of the %d-byte file", res.offset, res.size, size)
	case res.size%2 != 0:
		return nil, notWIM("xml data has an odd size, %d bytes, so it is not UTF-16", res.size)
	case res.size == 0 && h.imageCount > 0:
		return nil, notWIM("no xml data for %d images", h.imageCount)
	case res.size == 0:
		return &xmlWIM{}, nil
	}
	doc, err := decodeXML(io.NewSectionReader(r, int64(res.offset), int64(res.size)), int(h.imageCount))
	if err != nil {
		return nil, err
	}
	if len(doc.Images) != int(h.imageCount) {
		return nil, notWIM("header says %d images, xml has %d", h.imageCount, len(doc.Images))
	}
	return doc, nil
}

// readFull reads len(b) bytes at off, treating a short read as an error.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// notWIM returns an error wrapping ErrNotWIM with detail; format may use
// %w too.
func notWIM(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotWIM}, args...)...)
}
