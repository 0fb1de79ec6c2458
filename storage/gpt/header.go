package gpt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	signature  = "EFI PART"
	revision   = 0x00010000
	headerSize = 92  // the header's defined fields
	entrySize  = 128 // the entry's defined fields; an entry may be larger
)

// header is a GPT header's fields that Read uses.
type header struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	diskGUID                [16]byte
	entriesLBA              uint64
	count, entrySize        uint32
	entriesCRC              uint32
}

// parseHeader decodes and checks the header sector b found at lba on a disk
// of sectors sectors.
func parseHeader(b []byte, ss int, sectors, lba uint64) (header, error) {
	if string(b[:8]) != signature {
		return header{}, fmt.Errorf("no %q signature", signature)
	}
	if rev := binary.LittleEndian.Uint32(b[8:]); rev != revision {
		return header{}, fmt.Errorf("revision %#08x, want %#08x", rev, revision)
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < headerSize || int(size) > ss {
		return header{}, fmt.Errorf("header size %d, want %d to %d", size, headerSize, ss)
	}
	stored := binary.LittleEndian.Uint32(b[16:])
	c := bytes.Clone(b[:size])
	clear(c[16:20])
	if got := crc32.ChecksumIEEE(c); got != stored {
		return header{}, fmt.Errorf("bad CRC (header says %#08x, header has %#08x)", stored, got)
	}
	h := header{
		myLBA: le64(b[24:]), altLBA: le64(b[32:]),
		firstUsable: le64(b[40:]), lastUsable: le64(b[48:]),
		entriesLBA: le64(b[72:]),
		count:      binary.LittleEndian.Uint32(b[80:]), entrySize: binary.LittleEndian.Uint32(b[84:]),
		entriesCRC: binary.LittleEndian.Uint32(b[88:]),
	}
	copy(h.diskGUID[:], b[56:72])
	return h, h.check(ss, sectors, lba)
}

// check checks the header's fields against where it was found and the
// disk's size.
func (h header) check(ss int, sectors, lba uint64) error {
	switch {
	case h.altLBA >= sectors:
		return fmt.Errorf("backup header at LBA %d is past the end of the disk (%d sectors): the disk is smaller than its partition table says", h.altLBA, sectors)
	case h.myLBA != lba:
		return fmt.Errorf("says it is at LBA %d", h.myLBA)
	case h.entrySize < entrySize || h.entrySize%entrySize != 0:
		return fmt.Errorf("partition entry size %d, want a multiple of %d", h.entrySize, entrySize)
	case h.count == 0 || uint64(h.count)*uint64(h.entrySize) > maxEntryArray:
		return fmt.Errorf("%d partition entries of %d bytes, want 1 to %d bytes in all", h.count, h.entrySize, maxEntryArray)
	case h.firstUsable > h.lastUsable || h.lastUsable >= sectors:
		return fmt.Errorf("usable range LBA %d-%d does not fit a disk of %d sectors", h.firstUsable, h.lastUsable, sectors)
	}
	arraySectors := (uint64(h.count)*uint64(h.entrySize) + uint64(ss) - 1) / uint64(ss)
	if h.entriesLBA >= sectors || arraySectors > sectors-h.entriesLBA {
		return fmt.Errorf("partition entries at LBA %d run past the end of the disk", h.entriesLBA)
	}
	if h.entriesLBA <= h.lastUsable && h.firstUsable < h.entriesLBA+arraySectors {
		return fmt.Errorf("partition entries at LBA %d overlap the usable range LBA %d-%d", h.entriesLBA, h.firstUsable, h.lastUsable)
	}
	return nil
}

// agrees checks that the backup header b describes the same table as the
// primary h.
func (h header) agrees(b header, entries, backupEntries []byte) error {
	switch {
	case b.altLBA != h.myLBA:
		return corrupt("backup header at LBA %d points to a primary at LBA %d, not %d", b.myLBA, b.altLBA, h.myLBA)
	case b.diskGUID != h.diskGUID || b.firstUsable != h.firstUsable || b.lastUsable != h.lastUsable ||
		b.count != h.count || b.entrySize != h.entrySize || !bytes.Equal(entries, backupEntries):
		return corrupt("backup header at LBA %d and its entries differ from the primary's (repair with sgdisk or gdisk before writing by partition)", b.myLBA)
	}
	return nil
}

// notGPT says what the disk has instead of a GPT, from its MBR.
func notGPT(r io.ReaderAt, size int64) error {
	if size < 512 {
		return fmt.Errorf("%w: the disk is %d bytes, too small for a partition table", ErrNotGPT, size)
	}
	mbr := make([]byte, 512)
	if err := readFull(r, mbr, 0); err != nil {
		return err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return fmt.Errorf("%w: no partition table (no MBR boot signature and no GPT header)", ErrNotGPT)
	}
	used := 0
	for i := range 4 {
		switch mbr[446+16*i+4] {
		case 0:
		case 0xEE:
			return fmt.Errorf("%w: protective MBR only: no GPT header at LBA 1 for a sector size of 512 or 4096", ErrNotGPT)
		default:
			used++
		}
	}
	if used > 0 {
		return fmt.Errorf("%w: the disk has an MBR (DOS) partition table with %d partitions, not a GPT", ErrNotGPT, used)
	}
	return fmt.Errorf("%w: an MBR with no partitions and no GPT header", ErrNotGPT)
}
