// Package sample makes deterministic test and demo data shaped like real
// disks: a quarter random bytes (compressed files, encrypted data), a third
// zeros (free space) and the rest compressible text (logs, documents, code).
package sample

import (
	"bufio"
	"io"
	"math/rand/v2"
)

// regionSize is the granularity at which the kind of data changes, smaller
// than a chunk so that most chunks mix kinds as real disks do.
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
	for off := int64(0); off < size; off += regionSize {
		region := buf[:min(regionSize, size-off)]
		Fill(region, rng)
		if _, err := bw.Write(region); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Fill fills b with one region's worth of disk-shaped data drawn from rng.
func Fill(b []byte, rng *rand.Rand) {
	switch p := rng.IntN(12); {
	case p < 3: // a quarter random
		for i := 0; i+8 <= len(b); i += 8 {
			v := rng.Uint64()
			b[i], b[i+1], b[i+2], b[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			b[i+4], b[i+5], b[i+6], b[i+7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		}
	case p < 7: // a third zeros
		clear(b)
	default: // the rest text
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
