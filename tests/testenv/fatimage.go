package testenv

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// FATImage is a disk image with an MBR partition table and one FAT32
// partition, as tools this project did not write see it: sfdisk reads the
// table, fsck.vfat checks the file system and mtools reads its files.
type FATImage struct {
	Path     string
	DiskID   string // the MBR disk signature, as sfdisk prints it ("0x12345678")
	Offset   int64  // bytes before the partition
	Size     int64  // bytes of the partition
	Type     string // the partition type, as sfdisk prints it ("c")
	Bootable bool
}

// ReadFATImage reads the partition table of the image at path with
// sfdisk -J and fails the test unless it is an MBR ("dos") table with
// exactly one partition.
func ReadFATImage(t testing.TB, path string) *FATImage {
	t.Helper()
	var table struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start    int64  `json:"start"`
				Size     int64  `json:"size"`
				Type     string `json:"type"`
				Bootable bool   `json:"bootable"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	out := Run(t, "fdisk", "sfdisk", "-J", path)
	if err := json.Unmarshal([]byte(out), &table); err != nil {
		t.Fatalf("sfdisk -J %s: %v\n%s", path, err, out)
	}
	pt := table.PartitionTable
	if pt.Label != "dos" || len(pt.Partitions) != 1 {
		t.Fatalf("sfdisk -J %s: want an MBR (dos) table with one partition, got\n%s", path, out)
	}
	p := pt.Partitions[0]
	return &FATImage{Path: path, DiskID: pt.ID, Offset: p.Start * pt.SectorSize, Size: p.Size * pt.SectorSize, Type: p.Type, Bootable: p.Bootable}
}

// mtoolsImage is how mtools names the partition: the image and its offset.
func (im *FATImage) mtoolsImage() string { return im.Path + "@@" + strconv.FormatInt(im.Offset, 10) }

// Fsck runs fsck.vfat -n (check, change nothing) on the partition and
// fails the test if it finds anything to fix. fsck.vfat takes no offset,
// so it checks a copy of the partition.
func (im *FATImage) Fsck(t testing.TB) string {
	t.Helper()
	part := filepath.Join(t.TempDir(), "partition.img")
	src, err := os.Open(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, io.NewSectionReader(src, im.Offset, im.Size))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return Run(t, "dosfstools", "fsck.vfat", "-n", "-v", part)
}

// Dir lists a folder of the partition with mdir.
func (im *FATImage) Dir(t testing.TB, dir string) string {
	t.Helper()
	return Run(t, "mtools", "mdir", "-i", im.mtoolsImage(), "::"+dir)
}

// CopyOut copies every file of the partition into a new folder with
// mcopy and returns the folder.
func (im *FATImage) CopyOut(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	Run(t, "mtools", "mcopy", "-s", "-n", "-i", im.mtoolsImage(), "::*", dir+"/")
	return dir
}
