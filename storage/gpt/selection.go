package gpt

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrBadSelection is wrapped by Selection's checks: a partition number no
// table has, one named twice, one the image does not have, or both
// Restore and Keep given.
var ErrBadSelection = errors.New("gpt: bad partition selection")

// ErrWithCapacityCheck refuses a selection asked with the capacity check,
// which writes sentinels across the whole drive.
var ErrWithCapacityCheck = fmt.Errorf("%w: the capacity check writes sentinels across the whole drive, so it cannot be asked with --partition or --keep", ErrBadSelection)

// maxNumber bounds partition numbers before any table is read: no GPT a
// depot meets has more entries (Windows and sgdisk make 128).
const maxNumber = 1024

// Selection is which part of a disk image a partition-aware write writes:
// only the partitions in Restore, or the whole image but the partitions
// in Keep, which the drive keeps byte for byte. The zero Selection is the
// whole image.
type Selection struct {
	Restore []int
	Keep    []int
}

// Select is the Selection of partition numbers as flags and job options
// carry them.
func Select[N ~int | ~uint32](restore, keep []N) Selection {
	var s Selection
	for _, n := range restore {
		s.Restore = append(s.Restore, int(n))
	}
	for _, n := range keep {
		s.Keep = append(s.Keep, int(n))
	}
	return s
}

// Range is the bytes [Start, End) of a disk.
type Range struct {
	Start, End int64
}

// KeptRange is a range a write leaves alone, named for a report.
type KeptRange struct {
	Name string // "partition 4 (Windows recovery)", "primary partition table"
	Range
}

// Whole reports whether s selects the whole image.
func (s Selection) Whole() bool { return len(s.Restore) == 0 && len(s.Keep) == 0 }

// Named is the partitions whose place the drive must share with the image:
// those restored, or those kept.
func (s Selection) Named() []int { return slices.Concat(s.Restore, s.Keep) }

// String is the selection as the CLI's flags say it.
func (s Selection) String() string {
	flag, nums := "--partition", s.Restore
	if len(s.Keep) > 0 {
		flag, nums = "--keep", s.Keep
	}
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = fmt.Sprint(n)
	}
	return flag + " " + strings.Join(parts, ",")
}

// Check refuses a selection no image could satisfy, before any is read.
func (s Selection) Check() error {
	if len(s.Restore) > 0 && len(s.Keep) > 0 {
		return fmt.Errorf("%w: --partition and --keep exclude each other: restore some partitions, or keep some and write the rest", ErrBadSelection)
	}
	seen := map[int]bool{}
	for _, n := range s.Named() {
		switch {
		case n < 1 || n > maxNumber:
			return fmt.Errorf("%w: partition %d: partitions are numbered from 1 (as sfdisk and Linux number them) to at most %d", ErrBadSelection, n, maxNumber)
		case seen[n]:
			return fmt.Errorf("%w: partition %d is named twice", ErrBadSelection, n)
		}
		seen[n] = true
	}
	return nil
}

// Ranges checks s against the image's table and returns the byte ranges
// of the image (size bytes) to write, in order: the restored partitions,
// or everything but the kept ones.
func (s Selection) Ranges(image *Table, size int64) ([]Range, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if s.Whole() {
		return []Range{{0, size}}, nil
	}
	var named []Range
	for _, n := range s.Named() {
		p, ok := image.Partition(n)
		if !ok {
			return nil, fmt.Errorf("%w: the image has no partition %d (it has %s)", ErrBadSelection, n, image.Summary())
		}
		named = append(named, Range{p.Start, p.Start + p.Size})
	}
	slices.SortFunc(named, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	if len(s.Restore) > 0 {
		return named, nil
	}
	var rest []Range
	at := int64(0)
	for _, r := range named {
		if r.Start > at {
			rest = append(rest, Range{at, r.Start})
		}
		at = r.End
	}
	if at < size {
		rest = append(rest, Range{at, size})
	}
	return rest, nil
}

// Kept returns the ranges of the drive that s leaves alone and that hold
// something: the kept partitions, or, when only some are restored, the
// drive's partition table (both copies) and its other partitions. A write
// proves each untouched by hashing it before and after.
func (s Selection) Kept(drive *Table) []KeptRange {
	var kept []KeptRange
	for _, p := range drive.Partitions {
		if slices.Contains(s.Keep, p.Number) || len(s.Restore) > 0 && !slices.Contains(s.Restore, p.Number) {
			kept = append(kept, KeptRange{fmt.Sprintf("partition %d (%s)", p.Number, p.TypeName()), Range{p.Start, p.Start + p.Size}})
		}
	}
	if len(s.Restore) > 0 {
		ss := int64(drive.SectorSize)
		kept = append(kept,
			KeptRange{"primary partition table", Range{0, int64(drive.FirstUsable) * ss}},
			KeptRange{"backup partition table", Range{int64(drive.LastUsable+1) * ss, int64(drive.BackupLBA+1) * ss}})
	}
	return kept
}

// Summary lists the table's partitions for a person: "1 EFI system, 2
// Microsoft reserved, 3 Microsoft basic data".
func (t *Table) Summary() string {
	if len(t.Partitions) == 0 {
		return "no partitions"
	}
	parts := make([]string, len(t.Partitions))
	for i, p := range t.Partitions {
		parts[i] = fmt.Sprintf("%d %s", p.Number, p.TypeName())
	}
	return strings.Join(parts, ", ")
}
