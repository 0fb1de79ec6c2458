package gpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"unicode/utf16"
)

// Errors Read wraps, so callers can tell a disk with no GPT from a GPT that
// fails a check.
var (
	ErrNotGPT  = errors.New("gpt: no GUID partition table")
	ErrCorrupt = errors.New("gpt: corrupt GUID partition table")
)

// SectorSizes are the logical sector sizes Read tries, in order.
var SectorSizes = []int{512, 4096}

// maxEntryArray bounds the partition entry array Read reads (the usual one
// is 16 KiB: 128 entries of 128 bytes), so that a crafted header cannot make
// it allocate more.
const maxEntryArray = 1 << 20

// Table is a disk's GUID partition table as its primary header says, after
// the backup header was checked to agree.
type Table struct {
	SectorSize  int    // logical sector size in bytes: 512 or 4096
	DiskGUID    string // canonical upper-case text form
	FirstUsable uint64 // first LBA a partition may use
	LastUsable  uint64 // last LBA a partition may use
	BackupLBA   uint64 // LBA of the backup header
	Partitions  []Partition
}

// Partition is one used entry of the partition entry array.
type Partition struct {
	Number     int    // 1-based index in the entry array, as Linux and sgdisk number it
	Type       string // type GUID, canonical upper-case text form
	GUID       string // unique partition GUID
	Name       string
	FirstLBA   uint64
	LastLBA    uint64 // inclusive
	Attributes uint64
	Start      int64 // byte offset on the disk
	Size       int64 // bytes
}

// TypeName is the name of the partition's type (TypeName).
func (p Partition) TypeName() string { return TypeName(p.Type) }

// Partition returns the partition numbered n and whether there is one.
func (t *Table) Partition(n int) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}

// Open reads the GPT of the disk or image file at path.
func Open(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read partition table: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd) // a block device's size, as for a file
	if err != nil {
		return nil, fmt.Errorf("read partition table of %s: %w", path, err)
	}
	t, err := Read(f, size)
	if err != nil {
		return nil, fmt.Errorf("read partition table of %s: %w", path, err)
	}
	return t, nil
}

// Read reads the GPT of a disk of size bytes. The sector size is the first
// of SectorSizes whose LBA 1 holds a GPT signature.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	for _, ss := range SectorSizes {
		if size < int64(ss)*2 {
			break
		}
		sig := make([]byte, 8)
		if err := readFull(r, sig, int64(ss)); err != nil {
			return nil, err
		}
		if string(sig) == signature {
			return readTable(r, size, ss)
		}
	}
	return nil, notGPT(r, size)
}

// readTable reads and checks the primary header at LBA 1, then the backup
// where the primary says it is.
func readTable(r io.ReaderAt, size int64, ss int) (*Table, error) {
	sectors := uint64(size / int64(ss))
	primary, entries, err := readHeader(r, ss, sectors, 1)
	if err != nil {
		if _, _, berr := readHeader(r, ss, sectors, sectors-1); berr == nil {
			err = fmt.Errorf("%w (the backup header at the end of the disk is valid: gdisk's recovery menu can rebuild the primary from it)", err)
		}
		return nil, err
	}
	backup, backupEntries, err := readHeader(r, ss, sectors, primary.altLBA)
	if err != nil {
		return nil, err
	}
	if err := primary.agrees(backup, entries, backupEntries); err != nil {
		return nil, err
	}
	parts, err := primary.partitions(entries, ss)
	if err != nil {
		return nil, err
	}
	return &Table{
		SectorSize: ss, DiskGUID: guidString(primary.diskGUID[:]),
		FirstUsable: primary.firstUsable, LastUsable: primary.lastUsable,
		BackupLBA: primary.altLBA, Partitions: parts,
	}, nil
}

// readHeader reads the header at lba and its entry array, checking both.
func readHeader(r io.ReaderAt, ss int, sectors, lba uint64) (header, []byte, error) {
	which := "primary"
	if lba != 1 {
		which = "backup"
	}
	if lba >= sectors {
		return header{}, nil, corrupt("%s header at LBA %d: past the end of the disk (%d sectors)", which, lba, sectors)
	}
	b := make([]byte, ss)
	if err := readFull(r, b, int64(lba)*int64(ss)); err != nil {
		return header{}, nil, err
	}
	h, err := parseHeader(b, ss, sectors, lba)
	if err != nil {
		return header{}, nil, corrupt("%s header at LBA %d: %w", which, lba, err)
	}
	entries := make([]byte, int(h.count)*int(h.entrySize))
	if err := readFull(r, entries, int64(h.entriesLBA)*int64(ss)); err != nil {
		return header{}, nil, err
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return header{}, nil, corrupt("%s partition entries at LBA %d: bad CRC (header says %#08x, entries have %#08x)", which, h.entriesLBA, h.entriesCRC, got)
	}
	return h, entries, nil
}

// readFull reads len(b) bytes at off; a disk shorter than that is
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w", len(b), off, err)
}

// partitions decodes the used entries and checks each against the usable
// range and the others.
func (h header) partitions(entries []byte, ss int) ([]Partition, error) {
	var parts []Partition
	for i := 0; i < int(h.count); i++ {
		e := entries[i*int(h.entrySize):][:entrySize]
		if allZero(e[:16]) {
			continue
		}
		p := Partition{
			Number: i + 1, Type: guidString(e[0:16]), GUID: guidString(e[16:32]),
			FirstLBA: le64(e[32:]), LastLBA: le64(e[40:]), Attributes: le64(e[48:]),
			Name: utf16Name(e[56:128]),
		}
		if err := h.checkPartition(p, parts); err != nil {
			return nil, err
		}
		p.Start = int64(p.FirstLBA) * int64(ss)
		p.Size = int64(p.LastLBA-p.FirstLBA+1) * int64(ss)
		parts = append(parts, p)
	}
	return parts, nil
}

// checkPartition checks that p lies in the usable range and overlaps none
// of the partitions before it.
func (h header) checkPartition(p Partition, before []Partition) error {
	switch {
	case p.LastLBA < p.FirstLBA:
		return corrupt("partition %d: ends at LBA %d, before its start %d", p.Number, p.LastLBA, p.FirstLBA)
	case p.FirstLBA < h.firstUsable || p.LastLBA > h.lastUsable:
		return corrupt("partition %d: LBA %d-%d is outside the usable range %d-%d", p.Number, p.FirstLBA, p.LastLBA, h.firstUsable, h.lastUsable)
	}
	for _, q := range before {
		if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
			return corrupt("partition %d (LBA %d-%d) overlaps partition %d (LBA %d-%d)", p.Number, p.FirstLBA, p.LastLBA, q.Number, q.FirstLBA, q.LastLBA)
		}
	}
	return nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// utf16Name decodes a NUL-terminated UTF-16LE partition name.
func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// guidString formats a GUID stored mixed-endian (the first three fields
// little-endian) in its canonical upper-case text form.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}
