package gpt

import (
	"errors"
	"fmt"
)

// ErrMismatch is what a *MismatchError is (errors.Is): a drive's
// partitions are not laid out as an image's.
var ErrMismatch = errors.New("gpt: partition tables differ")

// MismatchError names the first difference Match found.
type MismatchError struct {
	Partition int    // 0 when the tables differ as a whole (sector size)
	Detail    string // "image starts at sector 2048, drive at 4096"
}

func (e *MismatchError) Error() string {
	if e.Partition == 0 {
		return e.Detail
	}
	return fmt.Sprintf("partition %d: %s", e.Partition, e.Detail)
}

// Is makes a *MismatchError ErrMismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Match checks that the drive's table has each of the image's partitions
// numbered in numbers at the same place: same start, same size, same type.
// Its error is a *MismatchError naming the first difference, as in
// "partition 4: image starts at sector 1026048, drive at 1030144".
func Match(image, drive *Table, numbers []int) error {
	if image.SectorSize != drive.SectorSize {
		return &MismatchError{Detail: fmt.Sprintf("image has %d-byte sectors, drive %d-byte", image.SectorSize, drive.SectorSize)}
	}
	for _, n := range numbers {
		want, ok := image.Partition(n)
		if !ok {
			return &MismatchError{n, "the image has no such partition"}
		}
		got, ok := drive.Partition(n)
		if !ok {
			return &MismatchError{n, "the drive has no such partition"}
		}
		if d := difference(want, got); d != "" {
			return &MismatchError{n, d}
		}
	}
	return nil
}

// difference names the first difference between an image's partition and
// a drive's; "" when they are at the same place with the same type.
func difference(image, drive Partition) string {
	switch {
	case image.FirstLBA != drive.FirstLBA:
		return fmt.Sprintf("image starts at sector %d, drive at %d", image.FirstLBA, drive.FirstLBA)
	case image.LastLBA != drive.LastLBA:
		return fmt.Sprintf("image has %d sectors, drive %d", image.LastLBA-image.FirstLBA+1, drive.LastLBA-drive.FirstLBA+1)
	case image.Type != drive.Type:
		return fmt.Sprintf("image has type %s, drive %s", image.TypeName(), drive.TypeName())
	}
	return ""
}
