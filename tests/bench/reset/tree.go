package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"

	"github.com/imagefarm/imagefarm/internal/sample"
)

// fileShape is the data of a Windows installation's files: binaries that
// compress to about half, some already compressed, few zeros.
var fileShape = sample.Shape{Random: 35, Zeros: 15}

// keepFiles are files of the keep-list every reset of the benchmark
// carries across: two Wi-Fi profiles and a provisioning package.
var keepFiles = map[string]int64{
	"ProgramData/Microsoft/Wlansvc/Profiles/Interfaces/{6B9C3A1E-2F4D-4E8A-9C1B-7D2E5F3A4B6C}/{0D1E2F3A-4B5C-4D6E-8F70-8192A3B4C5D6}.xml": 1 << 10,
	"ProgramData/Microsoft/Wlansvc/Profiles/Interfaces/{6B9C3A1E-2F4D-4E8A-9C1B-7D2E5F3A4B6C}/{1A2B3C4D-5E6F-4A8B-9C0D-1E2F3A4B5C6D}.xml": 1 << 10,
	"ProgramData/Microsoft/Provisioning/Company.ppkg": 2 << 20,
}

// treeCmd writes a tree shaped like a Windows installation: 70% of the
// bytes in files of 8 to 64 MiB, 30% in files of 4 to 256 KiB, 200 to a
// folder, plus the keep-list's files and the SYSTEM hive given with -hive.
func treeCmd(args []string) error {
	fs := flag.NewFlagSet("tree", flag.ExitOnError)
	size := fs.String("size", "4GiB", "bytes of files")
	seed := fs.Uint64("seed", 1, "seed of the data")
	hive := fs.String("hive", "", "the SYSTEM hive to put in Windows/System32/config")
	fs.Parse(args)
	total, err := humanize.ParseBytes(*size)
	if err != nil || fs.NArg() != 1 || *hive == "" {
		return fmt.Errorf("usage: tree -size S -hive SYSTEM OUT")
	}
	out := fs.Arg(0)
	rng := rand.New(rand.NewPCG(*seed, 7))
	big, small := int64(total)*7/10, int64(total)*3/10
	n := 0
	write := func(dir string, size int64) error {
		n++
		return writeFile(filepath.Join(out, dir, fmt.Sprintf("d%04d", n/200), fmt.Sprintf("f%06d.bin", n)), size, *seed+uint64(n))
	}
	for big > 0 {
		s := min(big, (8+rng.Int64N(57))<<20)
		if err := write("Windows/WinSxS", s); err != nil {
			return err
		}
		big -= s
	}
	for small > 0 {
		s := min(small, (4+rng.Int64N(253))<<10)
		if err := write("Windows/System32", s); err != nil {
			return err
		}
		small -= s
	}
	for p, s := range keepFiles {
		if err := writeFile(filepath.Join(out, p), s, *seed); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(*hive)
	if err != nil {
		return err
	}
	dst := filepath.Join(out, "Windows/System32/config/SYSTEM")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func writeFile(path string, size int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = sample.WriteImage(f, size, seed, fileShape)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
