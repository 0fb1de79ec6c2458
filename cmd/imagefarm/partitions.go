package main

import (
	"github.com/spf13/pflag"

	"github.com/imagefarm/imagefarm/storage/gpt"
)

// partitionFlags are --partition and --keep, which imagefarm write and
// imagefarm job submit share: which partitions of a disk image to write.
type partitionFlags struct {
	restore, keep []int
}

func (pf *partitionFlags) add(f *pflag.FlagSet) {
	f.IntSliceVar(&pf.restore, "partition", nil, "write only this partition of the disk image's GPT, numbered from 1 as sfdisk numbers them (repeatable, or N,M); the drive's other partitions are kept byte for byte and must match the image's")
	f.IntSliceVar(&pf.keep, "keep", nil, "keep this partition of the drive byte for byte and write the rest of the disk image (repeatable, or N,M); it must be where the image has it")
}

// selection checks the flags, as the controller and the imager will, and
// returns what they select.
func (pf *partitionFlags) selection(checkCapacity bool) (gpt.Selection, error) {
	sel := gpt.Select(pf.restore, pf.keep)
	err := sel.Check()
	if err == nil && checkCapacity && !sel.Whole() {
		err = gpt.ErrWithCapacityCheck
	}
	return sel, err
}

// uint32s is a checked selection's numbers as job options carry them.
func uint32s(ns []int) []uint32 {
	var out []uint32
	for _, n := range ns {
		out = append(out, uint32(n))
	}
	return out
}
