// Command mkimage writes the disk-shaped test images the benchmarks use:
// a quarter random, a third zeros, the rest compressible text.
//
//	go run ./tests/bench/mkimage -size 1GiB -seed 1 [-zeros 90] OUT
//	go run ./tests/bench/mkimage -from IN -change 5 -seed 1 OUT   # copy IN, changing 5% of its 4 MiB chunks
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/dustin/go-humanize"

	"github.com/imagefarm/imagefarm/internal/sample"
)

func main() {
	size := flag.String("size", "1GiB", "image size")
	seed := flag.Uint64("seed", 1, "seed of the generated data")
	from := flag.String("from", "", "copy this image instead of generating one")
	change := flag.Int("change", 5, "with -from: percent of 4 MiB chunks to change")
	zeros := flag.Int("zeros", sample.DiskShape.Zeros, "percent of the image that is zeros")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkimage [-size S -seed N | -from IN -change P] OUT")
		os.Exit(2)
	}
	shape := sample.DiskShape
	if *zeros != shape.Zeros {
		shape = sample.Shape{Random: (100 - *zeros) * 3 / 7, Zeros: *zeros} // random:text stays 3:4
	}
	if err := run(flag.Arg(0), *size, *seed, shape, *from, *change); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, size string, seed uint64, shape sample.Shape, from string, change int) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if from == "" {
		n, err := humanize.ParseBytes(size)
		if err != nil {
			return err
		}
		return sample.WriteImage(f, int64(n), seed, shape)
	}
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := io.Copy(f, src); err != nil {
		return err
	}
	fi, _ := f.Stat()
	const chunk = 4 << 20
	chunks := int(fi.Size() / chunk)
	// Change one byte, a quarter of the way in, of change% of the chunks
	// picked at random by seed, as a monthly update touches files anywhere.
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, i := range rng.Perm(chunks)[:chunks*change/100] {
		if _, err := f.WriteAt([]byte{byte(0xA0 + seed)}, int64(i)*chunk+chunk/4); err != nil { // differs per seed
			return err
		}
	}
	return nil
}
