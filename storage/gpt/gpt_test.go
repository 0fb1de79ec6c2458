package gpt_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/gpt"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// windowsLayout is a Windows disk's layout in sfdisk's script form: EFI,
// MSR, Windows, recovery.
const windowsLayout = `label: gpt
first-lba: 2048
size=100MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system partition"
size=16MiB, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name="Microsoft reserved partition"
size=200MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Basic data partition"
type=DE94BBA4-06D1-4D40-A16A-BFD50179D6AC, name="Windows RE"
`

// sfdiskImage partitions a sparse disk image of size bytes with sfdisk from
// script, through a loop device with the given logical sector size (sfdisk
// takes the sector size from the device), and returns the loop device.
func sfdiskImage(t *testing.T, size int64, sectorSize int, script string) *testenv.Loop {
	t.Helper()
	testenv.RequireRoot(t)
	l := testenv.NewLoop(t, size, "--sector-size", itoa(sectorSize))
	testenv.RunStdin(t, script, "fdisk", "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", l.Path)
	return l
}

// sfdiskJSON is what sfdisk --json says of a disk.
type sfdiskJSON struct {
	PartitionTable struct {
		ID         string `json:"id"`
		FirstLBA   uint64 `json:"firstlba"`
		LastLBA    uint64 `json:"lastlba"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node  string `json:"node"`
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// TestReadAgreesWithSfdisk reads tables sfdisk wrote, with both sector
// sizes, and checks every field against what sfdisk itself reads back.
func TestReadAgreesWithSfdisk(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		t.Run(itoa(ss), func(t *testing.T) {
			l := sfdiskImage(t, 512<<20, ss, windowsLayout)
			tab, err := gpt.Open(l.Path)
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			var want sfdiskJSON
			if err := json.Unmarshal([]byte(testenv.Run(t, "fdisk", "sfdisk", "--json", l.Path)), &want); err != nil {
				t.Fatal(err)
			}
			w := want.PartitionTable
			if tab.SectorSize != ss || tab.DiskGUID != w.ID || tab.FirstUsable != w.FirstLBA || tab.LastUsable != w.LastLBA {
				t.Errorf("Open = sector %d, disk %s, usable %d-%d; sfdisk says %d, %s, %d-%d",
					tab.SectorSize, tab.DiskGUID, tab.FirstUsable, tab.LastUsable, ss, w.ID, w.FirstLBA, w.LastLBA)
			}
			if len(tab.Partitions) != len(w.Partitions) {
				t.Fatalf("Open = %d partitions, sfdisk says %d", len(tab.Partitions), len(w.Partitions))
			}
			for i, p := range tab.Partitions {
				q := w.Partitions[i]
				if !strings.HasSuffix(q.Node, itoa(p.Number)) || p.FirstLBA != q.Start || p.LastLBA-p.FirstLBA+1 != q.Size ||
					p.Type != q.Type || p.GUID != q.UUID || p.Name != q.Name ||
					p.Start != int64(q.Start)*int64(ss) || p.Size != int64(q.Size)*int64(ss) {
					t.Errorf("partition %d = %+v, sfdisk says %+v", i+1, p, q)
				}
			}
			names := []string{"EFI system", "Microsoft reserved", "Microsoft basic data", "Windows recovery"}
			for i, p := range tab.Partitions {
				if p.TypeName() != names[i] {
					t.Errorf("partition %d TypeName = %q, want %q", p.Number, p.TypeName(), names[i])
				}
			}
		})
	}
}

// TestReadRefusesBadTables damages tables sfdisk wrote and checks that each
// is refused with an error saying what is wrong.
func TestReadRefusesBadTables(t *testing.T) {
	const size = 8 << 20
	good := sfdiskImage(t, size, 512, "label: gpt\nsize=2MiB, type=L\ntype=L\n")
	data, err := os.ReadFile(good.Backing)
	if err != nil {
		t.Fatal(err)
	}
	last := size - 512
	tests := []struct {
		name   string
		damage func(b []byte) []byte
		is     error
		want   string
	}{
		{"primary header CRC", func(b []byte) []byte { b[512+40]++; return b }, gpt.ErrCorrupt, "primary header at LBA 1: bad CRC"},
		{"primary header CRC names the valid backup", func(b []byte) []byte { b[512+40]++; return b }, gpt.ErrCorrupt, "backup header at the end of the disk is valid"},
		{"primary entries CRC", func(b []byte) []byte { b[1024+60]++; return b }, gpt.ErrCorrupt, "primary partition entries at LBA 2: bad CRC"},
		{"backup header CRC", func(b []byte) []byte { b[last+40]++; return b }, gpt.ErrCorrupt, "backup header at LBA 16383: bad CRC"},
		{"backup entries CRC", func(b []byte) []byte { b[last-32*512+60]++; return b }, gpt.ErrCorrupt, "backup partition entries at LBA 16351: bad CRC"},
		{"disk truncated", func(b []byte) []byte { return b[:size/2] }, gpt.ErrCorrupt, "backup header at LBA 16383 is past the end of the disk"},
		{"protective MBR only", func(b []byte) []byte { clear(b[512:1024]); return b }, gpt.ErrNotGPT, "protective MBR only"},
		{"nothing", func(b []byte) []byte { return make([]byte, len(b)) }, gpt.ErrNotGPT, "no partition table"},
		{"tiny", func(b []byte) []byte { return b[:100] }, gpt.ErrNotGPT, "too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.damage(append([]byte(nil), data...))
			tab, err := gpt.Read(bytesReader(b), int64(len(b)))
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Read = %+v, %v; want an error wrapping %v containing %q", tab, err, tt.is, tt.want)
			}
		})
	}
}

// TestReadRefusesMBR checks that a DOS partition table is named as such.
func TestReadRefusesMBR(t *testing.T) {
	l := sfdiskImage(t, 16<<20, 512, "label: dos\nsize=4MiB, type=83\ntype=7\n")
	_, err := gpt.Open(l.Backing)
	if !errors.Is(err, gpt.ErrNotGPT) || !strings.Contains(err.Error(), "MBR (DOS) partition table with 2 partitions") {
		t.Fatalf("Open(MBR disk) = %v, want ErrNotGPT naming the MBR table", err)
	}
}
