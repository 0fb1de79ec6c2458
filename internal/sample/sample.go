// Package sample makes deterministic test and demo data shaped like real
// disks: a quarter random bytes (compressed files, encrypted data), a third
// zeros (free space) and the rest compressible text (logs, documents, code).
package sample

import (
	"bufio"
	"encoding/binary"
	"io"
	"math/rand/v2"
)

// regionSize is the unit of an extent. An extent of one kind of data runs
// for 1 to 16 regions, so some chunks mix kinds and many are all one kind
// (a run of free space makes zero chunks), as on real disks.
const regionSize = 1 << 20

var words = []string{
	"the", "driver", "windows", "system32", "update", "install", "device", "lenovo",
	"thinkpad", "latitude", "elitebook", "surface", "registry", "service", "config",
	"recovery", "partition", "volume", "boot", "image", "kernel", "network", "adapter",
	"firmware", "version", "build", "error", "warning", "info", "log", "time", "user",
}

// Shape is the share of each kind of data in an image, in percent; the
// rest of 100 is text.
type Shape struct{ Random, Zeros int }

// DiskShape is the shape of a typical disk image.
var DiskShape = Shape{Random: 25, Zeros: 33}

// WriteDiskImage writes size bytes of disk-shaped data derived from seed.
func WriteDiskImage(w io.Writer, size int64, seed uint64) error {
	return WriteImage(w, size, seed, DiskShape)
}

// WriteImage writes size bytes of data of the given shape derived from seed.
func WriteImage(w io.Writer, size int64, seed uint64, shape Shape) error {
	bw := bufio.NewWriterSize(w, regionSize)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, regionSize)
	kind, left := 0, 0
	for off := int64(0); off < size; off += regionSize {
		if left == 0 {
			kind, left = rng.IntN(100), 1+rng.IntN(16)
		}
		left--
		region := buf[:min(regionSize, size-off)]
		fill(region, kind, shape, rng)
		if _, err := bw.Write(region); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// fill fills b with data of a kind from 0 to 99: random bytes below
// shape.Random, then zeros for shape.Zeros, then text.
func fill(b []byte, kind int, shape Shape, rng *rand.Rand) {
	switch {
	case kind < shape.Random:
		for i := 0; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
	case kind < shape.Random+shape.Zeros:
		clear(b)
	default:
		fillText(b, rng)
	}
}

func fillText(b []byte, rng *rand.Rand) {
	i := 0
	for i < len(b) {
		w := words[rng.IntN(len(words))]
		i += copy(b[i:], w)
		if i < len(b) {
			b[i] = " \n"[rng.IntN(2)&(rng.IntN(8)/7)]
			i++
		}
	}
}
