// Package fatdisk writes a disk image that holds a set of files: an MBR
// partition table with one FAT32 partition, in one sequential pass, as
// bytes that depend only on the files and the Options.
//
// The table is MBR ("dos"), not GPT, with one bootable FAT32 LBA partition
// (type 0x0c) starting at 1 MiB. The image is sized to its content, not to
// the USB key it is written to, and an MBR stays valid on any larger key,
// while a GPT keeps a backup header in the disk's last sectors, which on a
// larger key would not be there (firmware and Windows then report a damaged
// table). UEFI firmware boots \EFI\BOOT\BOOTX64.EFI from a FAT32 partition
// on an MBR disk as readily as from a GPT one (UEFI specification, removable
// media boot), and Windows installation media are laid out this way.
//
// Why not github.com/diskfs/go-diskfs, measured with v1.9.4 on a 1 GiB file
// and 200 MiB of drivers before this package was written: its FAT32 writer
// is fast enough when fed large writes (3.2 s, like mkfs.vfat and mcopy),
// but its output is not fixed by its inputs and not clean: the "." and ".."
// entries and the volume label take time.Now (only the process-wide
// SOURCE_DATE_EPOCH variable fixes them, and 1970 then overflows to 2098),
// the volume serial is time-based or zero, the hidden-sectors field is 0 on
// a partition at 1 MiB, every folder made in the root gets a ".." entry
// pointing at cluster 2 where the FAT specification wants 0 (fsck.vfat -n
// fails such an image), and the free cluster count is left unset. Every
// file here is known before the first byte is written, so a write-once
// layout is small: folders first, then each file in one contiguous run of
// clusters, so the image is written front to back, at the speed of a copy,
// and fsck.vfat finds nothing to fix.
package fatdisk
