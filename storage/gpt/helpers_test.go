package gpt_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

func itoa(n int) string { return strconv.Itoa(n) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// part is one partition for buildGPT: LBA range and type.
type part struct {
	first, last uint64
	typ         string
}

// buildGPT builds a whole disk of sectors sectors with a protective MBR, a
// primary and a backup GPT of four entries holding parts. It writes what the
// UEFI specification says, independently of the package's reader, for
// inputs sfdisk cannot make small enough to fuzz.
func buildGPT(ss int, sectors uint64, parts []part) []byte {
	disk := make([]byte, int(sectors)*ss)
	disk[510], disk[511] = 0x55, 0xAA
	disk[446+4] = 0xEE
	binary.LittleEndian.PutUint32(disk[446+8:], 1)
	binary.LittleEndian.PutUint32(disk[446+12:], uint32(sectors-1))
	entries := make([]byte, 4*128)
	for i, p := range parts {
		e := entries[i*128:]
		putGUID(e[0:16], p.typ)
		putGUID(e[16:32], fmt.Sprintf("00000000-0000-0000-0000-%012X", i+1))
		binary.LittleEndian.PutUint64(e[32:], p.first)
		binary.LittleEndian.PutUint64(e[40:], p.last)
	}
	first, last := uint64(3), sectors-3
	writeHeader(disk, ss, 1, sectors-1, 2, first, last, entries)
	writeHeader(disk, ss, sectors-1, 1, sectors-2, first, last, entries)
	return disk
}

func writeHeader(disk []byte, ss int, my, alt, entriesLBA, first, last uint64, entries []byte) {
	copy(disk[int(entriesLBA)*ss:], entries)
	h := disk[int(my)*ss:][:92]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], my)
	binary.LittleEndian.PutUint64(h[32:], alt)
	binary.LittleEndian.PutUint64(h[40:], first)
	binary.LittleEndian.PutUint64(h[48:], last)
	putGUID(h[56:72], "11111111-2222-3333-4444-555555555555")
	binary.LittleEndian.PutUint64(h[72:], entriesLBA)
	binary.LittleEndian.PutUint32(h[80:], 4)
	binary.LittleEndian.PutUint32(h[84:], 128)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
}

// putGUID stores a GUID's text form mixed-endian.
func putGUID(b []byte, s string) {
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		panic("bad GUID " + s)
	}
	binary.LittleEndian.PutUint32(b[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(b[8:16], raw[8:16])
}
