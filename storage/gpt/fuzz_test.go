package gpt_test

import (
	"errors"
	"io"
	"testing"

	"github.com/imagefarm/imagefarm/storage/gpt"
)

// FuzzRead checks that Read never panics nor allocates past its bound on any
// bytes, that every error is ErrNotGPT, ErrCorrupt or a short read, and
// that what it accepts is consistent: partitions inside the usable range
// and the disk, in entry order, overlapping none.
func FuzzRead(f *testing.F) {
	f.Add(buildGPT(512, 64, []part{{3, 20, gpt.TypeEFISystem}, {21, 40, gpt.TypeBasicData}, {41, 61, gpt.TypeWindowsRecovery}}))
	f.Add(buildGPT(4096, 16, []part{{3, 12, gpt.TypeLinux}}))
	f.Add(buildGPT(512, 16, nil))
	f.Fuzz(func(t *testing.T, disk []byte) {
		tab, err := gpt.Read(bytesReader(disk), int64(len(disk)))
		if err != nil {
			if !errors.Is(err, gpt.ErrNotGPT) && !errors.Is(err, gpt.ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Read = %v, want ErrNotGPT, ErrCorrupt or a short read", err)
			}
			return
		}
		checkTable(t, tab, int64(len(disk)))
	})
}

// checkTable checks what Read returned against the disk's size.
func checkTable(t *testing.T, tab *gpt.Table, size int64) {
	t.Helper()
	if tab.SectorSize != 512 && tab.SectorSize != 4096 {
		t.Fatalf("Read = sector size %d", tab.SectorSize)
	}
	for i, p := range tab.Partitions {
		if p.FirstLBA < tab.FirstUsable || p.LastLBA > tab.LastUsable || p.LastLBA < p.FirstLBA {
			t.Errorf("partition %d at LBA %d-%d, usable %d-%d", p.Number, p.FirstLBA, p.LastLBA, tab.FirstUsable, tab.LastUsable)
		}
		if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > size {
			t.Errorf("partition %d bytes %d+%d on a disk of %d", p.Number, p.Start, p.Size, size)
		}
		if got, ok := tab.Partition(p.Number); !ok || got != p {
			t.Errorf("Partition(%d) = %+v, %v", p.Number, got, ok)
		}
		for _, q := range tab.Partitions[:i] {
			if q.Number >= p.Number || (p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA) {
				t.Errorf("partitions %d and %d out of order or overlapping", q.Number, p.Number)
			}
		}
	}
}
