package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/sample"
)

func newDevCmd(g *globals) *cobra.Command {
	var (
		dataDir string
		demo    bool
		size    int64
	)
	cmd := &cobra.Command{
		Use:   "dev --demo",
		Short: "Run the embedded dev setup under one data folder; --demo pushes a sample disk image and writes it to virtual drives, verified",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return fmt.Errorf("data folder: %w", err)
			}
			if g.store == "" {
				g.store = "file://" + filepath.Join(dataDir, "store")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "data folder: %s\nimage store: %s  (export IMAGEFARM_STORE=%s)\n", dataDir, g.store, g.store)
			if !demo {
				fmt.Fprintln(cmd.OutOrStdout(), "run with --demo to push a sample disk image and write it to virtual drives, verified")
				return nil
			}
			return runDemo(cmd, g, dataDir, size)
		},
	}
	cache, _ := os.UserCacheDir()
	cmd.Flags().StringVar(&dataDir, "data", filepath.Join(cache, "imagefarm", "dev"), "data folder of the dev setup")
	cmd.Flags().BoolVar(&demo, "demo", false, "push a sample disk image and write it to 4 virtual drives, verified")
	cmd.Flags().Int64Var(&size, "size", 256<<20, "size of the sample disk image in bytes")
	return cmd
}

// runDemo makes a disk-shaped sample image, pushes it, pulls it back and
// checks the pulled bytes against the original with a hash computed here.
func runDemo(cmd *cobra.Command, g *globals, dataDir string, size int64) error {
	out := cmd.OutOrStdout()
	src := filepath.Join(dataDir, "sample-disk.img")
	f, err := os.Create(src)
	if err != nil {
		return err
	}
	seed := uint64(time.Now().UnixNano())
	err = sample.WriteDiskImage(f, size, seed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sample image: %w", err)
	}
	fmt.Fprintf(out, "made a %s sample disk image (random, zeros and text) at %s\n", bytesIEC(size), src)
	drives, err := makeVirtualDrives(filepath.Join(dataDir, "drives"), 4, max(1<<30, size))
	if err != nil {
		return err
	}
	ref := "sample-disk:" + time.Now().UTC().Format("20060102.150405")
	write := []string{"write", "sample-disk:demo", "--virtual-drives", filepath.Join(dataDir, "drives"), "--cache", filepath.Join(dataDir, "cache")}
	for _, d := range drives {
		write = append(write, "--drive", d)
	}
	steps := [][]string{
		{"image", "push", ref, src, "--label", "source=demo", "--channel", "demo"},
		{"image", "inspect", ref},
		write,
	}
	for _, args := range steps {
		fmt.Fprintf(out, "\n$ imagefarm %s\n", joinArgs(args))
		sub := newRootCmd()
		sub.SetArgs(append(args, "--store", g.store))
		sub.SetOut(out)
		sub.SetErr(out)
		if err := sub.ExecuteContext(cmd.Context()); err != nil {
			return err
		}
	}
	return checkDrives(out, src, drives, size)
}

// makeVirtualDrives creates n sparse files of size bytes in dir, the demo's
// drives, and returns their paths.
func makeVirtualDrives(dir string, n int, size int64) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("drive%d.img", i))
		f, err := os.Create(p)
		if err == nil {
			err = f.Truncate(size)
			f.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("virtual drive: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// checkDrives hashes the sample and the first size bytes of every drive
// here, independently of the write pipeline's own verification.
func checkDrives(out io.Writer, src string, drives []string, size int64) error {
	want, err := fileSHA256(src, size)
	if err != nil {
		return err
	}
	for _, d := range drives {
		got, err := fileSHA256(d, size)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("demo: %s has sha256 %s, the sample %s", d, got, want)
		}
	}
	fmt.Fprintf(out, "\nchecked independently: all %d drives hold the sample's sha256 %s\n", len(drives), want)
	return nil
}

func joinArgs(args []string) string { return strings.Join(args, " ") }

// fileSHA256 is the hex SHA-256 of the first n bytes of the file at path.
func fileSHA256(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
