package netboot_test

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/imagefarm/imagefarm/media/fatdisk"
)

// espDisk is a disk holding an EFI system partition (MBR, FAT32, as
// media/fatdisk writes USB keys) whose \EFI\BOOT\BOOTX64.EFI is
// efiMarker: the UEFI VMs' local disk. OVMF makes a boot entry for it by
// the removable-media path, as laptop firmware does for a disk it finds.
func espDisk() ([]byte, error) {
	var b bytes.Buffer
	files := []fatdisk.File{{Path: "EFI/BOOT/BOOTX64.EFI", Data: efiMarker()}}
	if _, err := fatdisk.Write(&b, files, fatdisk.Options{Label: "ESP", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// efiMarker is an x86-64 UEFI application that does what mbrDisk's boot
// sector does: it writes localMarker to COM1 and ends QEMU through its
// isa-debug-exit port. It is a PE32+ image of one section, written out
// here (no EFI toolchain is needed): the DOS stub's e_lfanew, the COFF
// header, the optional header with its 16 data directories (all empty:
// the code is position independent, so there is nothing to relocate) and
// the .text section at RVA 0x1000.
func efiMarker() []byte {
	msg := "\r\n" + localMarker + " (EFI)\r\n\x00"
	code := []byte{
		0x48, 0x8d, 0x35, 0x13, 0x00, 0x00, 0x00, // lea rsi, [rip+0x13] (the message)
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1)
		0xac,       // loop: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz done
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp loop
		0xb0, 0x00, // done: mov al, 0
		0xe6, 0xf4, // out 0xf4, al (QEMU exits, status 1)
		0xf4,       // hlt
		0xeb, 0xfd, // jmp hlt
	}
	text := append(code, msg...)
	const (
		peOffset   = 0x40
		fileAlign  = 0x200
		sectAlign  = 0x1000
		textRVA    = sectAlign
		optHdrSize = 240
	)
	img := make([]byte, fileAlign+fileAlign) // headers, then .text (< 0x200 bytes)
	le := binary.LittleEndian
	copy(img, "MZ")
	le.PutUint32(img[0x3c:], peOffset)
	copy(img[peOffset:], "PE\x00\x00")
	coff := img[peOffset+4:]
	le.PutUint16(coff[0:], 0x8664) // x86-64
	le.PutUint16(coff[2:], 1)      // one section
	le.PutUint16(coff[16:], optHdrSize)
	le.PutUint16(coff[18:], 0x0022) // executable, large-address aware
	opt := coff[20:]
	le.PutUint16(opt[0:], 0x20b) // PE32+
	le.PutUint32(opt[4:], fileAlign)
	le.PutUint32(opt[16:], textRVA) // entry point
	le.PutUint32(opt[20:], textRVA) // base of code
	le.PutUint64(opt[24:], 0x10000000)
	le.PutUint32(opt[32:], sectAlign)
	le.PutUint32(opt[36:], fileAlign)
	le.PutUint32(opt[56:], 2*sectAlign) // size of image
	le.PutUint32(opt[60:], fileAlign)   // size of headers
	le.PutUint16(opt[68:], 10)          // EFI application
	le.PutUint64(opt[72:], 0x10000)     // stack reserve
	le.PutUint64(opt[80:], 0x10000)     // stack commit
	le.PutUint32(opt[108:], 16)         // data directories
	sect := opt[optHdrSize:]
	copy(sect, ".text")
	le.PutUint32(sect[8:], uint32(len(text)))
	le.PutUint32(sect[12:], textRVA)
	le.PutUint32(sect[16:], fileAlign)
	le.PutUint32(sect[20:], fileAlign)
	le.PutUint32(sect[36:], 0x60000020) // code, execute, read
	copy(img[fileAlign:], text)
	return img
}
