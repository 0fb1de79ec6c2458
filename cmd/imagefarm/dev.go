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
		Short: "Run the embedded dev setup: a file store under one data folder; --demo pushes and pulls a sample disk image",
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
				fmt.Fprintln(cmd.OutOrStdout(), "run with --demo to push a sample disk image and pull it back, verified")
				return nil
			}
			return runDemo(cmd, g, dataDir, size)
		},
	}
	cache, _ := os.UserCacheDir()
	cmd.Flags().StringVar(&dataDir, "data", filepath.Join(cache, "imagefarm", "dev"), "data folder of the dev setup")
	cmd.Flags().BoolVar(&demo, "demo", false, "push a sample disk image, pull it back and verify it")
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
	ref := "sample-disk:" + time.Now().UTC().Format("20060102.150405")
	steps := [][]string{
		{"image", "push", ref, src, "--label", "source=demo", "--channel", "demo"},
		{"image", "inspect", ref},
		{"image", "pull", "sample-disk:demo", filepath.Join(dataDir, "pulled.img")},
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
	want, err := fileSHA256(src)
	if err != nil {
		return err
	}
	got, err := fileSHA256(filepath.Join(dataDir, "pulled.img"))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("demo: pulled image sha256 %s, want %s", got, want)
	}
	fmt.Fprintf(out, "\nverified: the pulled image has the original's sha256 %s\n", want)
	return nil
}

func joinArgs(args []string) string { return strings.Join(args, " ") }

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
