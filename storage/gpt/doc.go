// Package gpt reads GUID Partition Tables: the protective MBR, the primary
// and backup headers and their partition entry arrays, each checked
// against its CRC32, for logical sector sizes of 512 and 4096 bytes.
//
// It is what the farm knows about a disk's layout: partition-aware jobs
// compare an image's table with the target drive's before writing only some
// partitions, and the reset engine finds the Windows and recovery
// partitions by their type GUIDs.
//
// Reading is strict: a table is returned only when the primary and the
// backup header are both valid and agree, so nothing is written by
// partition on a disk whose layout is in doubt. Errors say what is wrong
// (not GPT, an MBR-only disk, a bad CRC, a partition past the end) and
// wrap ErrNotGPT when there is no usable GPT at all, ErrCorrupt when there
// is one that fails a check.
//
// It is a small parser rather than go-diskfs's partition/gpt because that
// package sizes the entry array from the header unchecked (a crafted
// header makes it allocate terabytes), reads the backup only when the
// primary fails, and does not check entries against the usable range or
// each other; disk images here come from a catalog and drives from
// returned laptops, so the parser must hold against any bytes (FuzzRead).
package gpt
