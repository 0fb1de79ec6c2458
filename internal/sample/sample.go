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

// WriteDiskImage writes size bytes of disk-shaped data derived from seed.
func WriteDiskImage(w io.Writer, size int64, seed uint64) error {
	bw := bufio.NewWriterSize(w, regionSize)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, regionSize)
	kind, left := 0, 0
	for off := int64(0); off < size; off += regionSize {
		if left == 0 {
			kind, left = rng.IntN(12), 1+rng.IntN(16)
		}
		left--
		region := buf[:min(regionSize, size-off)]
		fill(region, kind, rng)
		if _, err := bw.Write(region); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// fill fills b with data of a kind from 0 to 11: a quarter of the kinds are
// random bytes, a third zeros and the rest text.
func fill(b []byte, kind int, rng *rand.Rand) {
	switch {
	case kind < 3:
		for i := 0; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
	case kind < 7:
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
