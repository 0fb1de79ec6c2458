package fatdisk

import (
	"encoding/binary"
	"fmt"
)

const (
	sectorSize = 512
	// partitionLBA is where the partition starts: 1 MiB, the alignment
	// every partitioning tool uses, good for flash erase blocks.
	partitionLBA = 2048
	// minClusters keeps the volume FAT32: the FAT specification makes any
	// volume of fewer than 65525 clusters FAT12 or FAT16, whatever its boot
	// sector says. The rest is a margin for readers that count differently.
	minClusters = 65525 + 1024
	// maxClusters is the most a FAT32 can address.
	maxClusters = 0x0FFFFFF5 - 2
	// maxDirEntries is the FAT specification's limit on a folder's entries.
	maxDirEntries = 65536
	entrySize     = 32
	// The boot sector's geometry for BIOSes that still read it.
	sectorsPerTrack = 63
	heads           = 255
)

// layout is where everything lies in the image.
type layout struct {
	clusterSize  int64
	reserved     int64 // sectors before the first FAT
	fatSectors   int64 // sectors of each of the two FATs
	clusters     int64 // data clusters of the volume
	used         int64 // data clusters in use
	totalSectors int64 // sectors of the partition
	root         *node
	order        []*node // folders, then files with data, in cluster order
}

// clusterSizeFor is Microsoft's default FAT32 cluster size (format's, and
// mkfs.fat's) for a volume of about size bytes.
func clusterSizeFor(size int64) int64 {
	switch {
	case size <= 260<<20:
		return 512
	case size <= 8<<30:
		return 4 << 10
	case size <= 16<<30:
		return 8 << 10
	case size <= 32<<30:
		return 16 << 10
	default:
		return 32 << 10
	}
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
func roundUp(a, b int64) int64 { return ceilDiv(a, b) * b }

// newLayout sizes every folder, gives every folder and file its run of
// clusters, and sizes the volume: the content plus 1/64 (at least 1 MiB)
// free, in whole MiB.
func newLayout(root *node) (*layout, error) {
	var dirs, files []*node
	var content int64
	err := root.walk(func(n *node) error {
		if n.dir {
			entries := 1 // the volume label in the root, "." and ".." elsewhere
			if n != root {
				entries = 2
			}
			for _, c := range n.children {
				entries += 1 + lfnSlots(c)
			}
			if entries > maxDirEntries {
				return fmt.Errorf("%w: folder %q has more than %d entries", ErrBadFile, n.name, maxDirEntries)
			}
			n.size = int64(entries * entrySize)
			dirs = append(dirs, n)
		} else if n.size > 0 {
			files = append(files, n)
		}
		content += n.size
		return nil
	})
	if err != nil {
		return nil, err
	}
	l := &layout{clusterSize: clusterSizeFor(content), root: root, order: append(dirs, files...)}
	next := int64(2)
	for _, n := range l.order {
		n.cluster, n.clusters = uint32(next), uint32(ceilDiv(n.size, l.clusterSize))
		next += int64(n.clusters)
	}
	l.used = next - 2
	if err := l.size(l.used + max((1<<20)/l.clusterSize, l.used/64)); err != nil {
		return nil, err
	}
	return l, nil
}

// size sets the geometry of a volume of at least want clusters, in whole
// MiB, its FATs as small as they can be and its data area aligned to the
// cluster size.
func (l *layout) size(want int64) error {
	spc := l.clusterSize / sectorSize
	l.reserved = max(32, spc) // 32, as mkfs.fat and Windows format
	clusters := max(want, minClusters)
	fatFor := func(n int64) int64 { return roundUp(ceilDiv((n+2)*4, sectorSize), spc) }
	fat := fatFor(clusters)
	for {
		total := roundUp(l.reserved+2*fat+clusters*spc, partitionLBA)
		n := (total - l.reserved - 2*fat) / spc
		if fatFor(n) <= fat {
			l.fatSectors, l.clusters, l.totalSectors = fat, n, total
			break
		}
		fat = fatFor(n)
	}
	if l.clusters > maxClusters || partitionLBA+l.totalSectors > 1<<32-1 {
		return fmt.Errorf("%w: %d bytes of content is more than an MBR FAT32 volume holds", ErrBadFile, l.used*l.clusterSize)
	}
	return nil
}

func (l *layout) imageBytes() int64 { return (partitionLBA + l.totalSectors) * sectorSize }

func (l *layout) clusterOffset(c uint32) int64 {
	return PartitionStart + (l.reserved+2*l.fatSectors)*sectorSize + int64(c-2)*l.clusterSize
}

// mbr is the image's first sector: one bootable FAT32 LBA partition. Its
// code only asks the BIOS to try the next boot device (INT 18h): the key
// boots by UEFI.
func (l *layout) mbr(diskID uint32) []byte {
	b := make([]byte, sectorSize)
	copy(b, []byte{0xcd, 0x18, 0xeb, 0xfe}) // int 18h; jmp $
	binary.LittleEndian.PutUint32(b[440:], diskID)
	p := b[446:462]
	p[0] = 0x80 // active
	copy(p[1:4], chs(partitionLBA))
	p[4] = 0x0c // FAT32 with LBA
	copy(p[5:8], chs(partitionLBA+l.totalSectors-1))
	binary.LittleEndian.PutUint32(p[8:], partitionLBA)
	binary.LittleEndian.PutUint32(p[12:], uint32(l.totalSectors))
	b[510], b[511] = 0x55, 0xaa
	return b
}

// chs is the cylinder-head-sector address of lba as an MBR entry holds it,
// or the "beyond CHS" marker past cylinder 1023.
func chs(lba int64) []byte {
	c := lba / (heads * sectorsPerTrack)
	if c > 1023 {
		return []byte{0xfe, 0xff, 0xff}
	}
	h, s := (lba/sectorsPerTrack)%heads, lba%sectorsPerTrack+1
	return []byte{byte(h), byte(s) | byte(c>>2)&0xc0, byte(c)}
}

// bootSector is the FAT32 boot sector (BPB), as in Microsoft's FAT
// specification.
func (l *layout) bootSector(label [11]byte, volumeID uint32) []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b, []byte{0xeb, 0x58, 0x90})
	copy(b[3:], "MSWIN4.1") // the OEM name the specification recommends
	le.PutUint16(b[11:], sectorSize)
	b[13] = byte(l.clusterSize / sectorSize)
	le.PutUint16(b[14:], uint16(l.reserved))
	b[16] = 2    // FATs
	b[21] = 0xf8 // fixed disk
	le.PutUint16(b[24:], sectorsPerTrack)
	le.PutUint16(b[26:], heads)
	le.PutUint32(b[28:], partitionLBA) // hidden sectors: where the partition starts
	le.PutUint32(b[32:], uint32(l.totalSectors))
	le.PutUint32(b[36:], uint32(l.fatSectors))
	le.PutUint32(b[44:], l.root.cluster)
	le.PutUint16(b[48:], 1) // FSInfo sector
	le.PutUint16(b[50:], 6) // backup boot sector
	b[64] = 0x80            // drive number
	b[66] = 0x29            // extended boot signature: serial, label and type follow
	le.PutUint32(b[67:], volumeID)
	copy(b[71:82], label[:])
	copy(b[82:90], "FAT32   ")
	copy(b[90:], []byte{0xcd, 0x18, 0xeb, 0xfe}) // int 18h; jmp $
	b[510], b[511] = 0x55, 0xaa
	return b
}

// fsInfo is the FSInfo sector: the free cluster count and where free
// clusters start, both exact.
func (l *layout) fsInfo() []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0x41615252)
	le.PutUint32(b[484:], 0x61417272)
	le.PutUint32(b[488:], uint32(l.clusters-l.used))
	le.PutUint32(b[492:], uint32(2+l.used))
	le.PutUint32(b[508:], 0xaa550000)
	return b
}

// fat is one copy of the allocation table: each node's clusters chained
// in one run.
func (l *layout) fat() []byte {
	b := make([]byte, l.fatSectors*sectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0x0ffffff8) // media byte 0xf8
	le.PutUint32(b[4:], 0x0fffffff) // end of chain; clean, no errors
	for _, n := range l.order {
		for c := n.cluster; c < n.cluster+n.clusters-1; c++ {
			le.PutUint32(b[4*c:], c+1)
		}
		le.PutUint32(b[4*(n.cluster+n.clusters-1):], 0x0fffffff)
	}
	return b
}

// bootRegion writes the reserved sectors: the boot sector and FSInfo, and
// their backups at sectors 6 and 7.
func (iw *imageWriter) bootRegion() error {
	l := iw.l
	boot, info := l.bootSector(iw.label, iw.opts.VolumeID), l.fsInfo()
	for _, at := range []int64{0, 6} {
		if err := iw.padTo(PartitionStart + at*sectorSize); err != nil {
			return err
		}
		if _, err := iw.Write(boot); err != nil {
			return err
		}
		if _, err := iw.Write(info); err != nil {
			return err
		}
	}
	return iw.padTo(PartitionStart + l.reserved*sectorSize)
}

func (iw *imageWriter) fats() error {
	fat := iw.l.fat()
	for range 2 {
		if _, err := iw.Write(fat); err != nil {
			return err
		}
	}
	return nil
}
