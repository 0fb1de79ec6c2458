package gpt

import (
	"errors"
	"fmt"
)

// ErrMismatch is wrapped by Match when a drive's partitions are not laid
// out as an image's.
var ErrMismatch = errors.New("gpt: partition tables differ")

// Match checks that the drive's table has each of the image's partitions
// numbered in numbers at the same place: same start, same size, same type.
// Its error wraps ErrMismatch and names the first difference, as in
// "partition 4: image starts at sector 1026048, drive at 1030144".
func Match(image, drive *Table, numbers []int) error {
	if image.SectorSize != drive.SectorSize {
		return fmt.Errorf("%w: image has %d-byte sectors, drive %d-byte", ErrMismatch, image.SectorSize, drive.SectorSize)
	}
	for _, n := range numbers {
		want, ok := image.Partition(n)
		if !ok {
			return fmt.Errorf("%w: partition %d: the image has no partition %d", ErrMismatch, n, n)
		}
		got, ok := drive.Partition(n)
		if !ok {
			return fmt.Errorf("%w: partition %d: the drive has no partition %d", ErrMismatch, n, n)
		}
		if err := samePartition(want, got); err != nil {
			return fmt.Errorf("%w: partition %d: %w", ErrMismatch, n, err)
		}
	}
	return nil
}

// samePartition names the first difference between an image's partition and
// a drive's.
func samePartition(image, drive Partition) error {
	switch {
	case image.FirstLBA != drive.FirstLBA:
		return fmt.Errorf("image starts at sector %d, drive at %d", image.FirstLBA, drive.FirstLBA)
	case image.LastLBA != drive.LastLBA:
		return fmt.Errorf("image has %d sectors, drive %d", image.LastLBA-image.FirstLBA+1, drive.LastLBA-drive.FirstLBA+1)
	case image.Type != drive.Type:
		return fmt.Errorf("image has type %s, drive %s", image.TypeName(), drive.TypeName())
	}
	return nil
}
