package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

func newImagePullCmd(g *globals) *cobra.Command {
	var asTar, force bool
	cmd := &cobra.Command{
		Use:   "pull REF FILE|FOLDER|-",
		Short: "Write an image's bytes to a file (zero chunks as holes) or to stdout, or unpack a folder bundle (winpe, drivers, hook, recovery) into a new folder, verifying every chunk",
		Long: `Write an image's bytes to FILE, verifying every chunk; the file appears only once
complete. FILE must be a new path in a folder that exists, or, with --force, an
existing regular file: a device, FIFO or socket is refused (imagefarm write
writes drives), and - streams the bytes to stdout. A folder bundle (winpe,
drivers, hook, recovery) is unpacked into FOLDER, which must not exist yet (--tar writes the tar instead).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ref, err := openRef(g, args[0])
			if err != nil {
				return err
			}
			dst := args[1]
			if dst == "-" && g.json {
				return errors.New("--json and -: stdout holds the image; pull to a file to get JSON")
			}
			m, digest, err := c.Manifest(cmd.Context(), ref)
			if err != nil {
				return err
			}
			folder := m.Kind.Folder() && !asTar
			if folder && force {
				return fmt.Errorf("--force replaces a file; %s is a %s bundle, unpacked into a new folder (or pass --tar for its tar file)", ref, m.Kind)
			}
			bar := newProgressBar("pull", m.Size)
			start := time.Now()
			err = pullTo(cmd.Context(), cmd.OutOrStdout(), c, m, dst, folder, force, bar.Add)
			bar.Done(err)
			if err != nil {
				return err
			}
			return printPull(cmd, g, ref, digest, m, dst, time.Since(start))
		},
	}
	cmd.Flags().BoolVar(&asTar, "tar", false, "write a folder bundle (winpe, drivers, hook, recovery) as its tar file instead of unpacking it")
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists (a regular file only)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

// pullTo writes m to dst: stdout for "-", a new folder for a bundle to
// unpack, else a file (userpath.Create: a new path, or with force an
// existing regular file).
func pullTo(ctx context.Context, stdout io.Writer, c *catalog.Catalog, m *catalog.Manifest, dst string, folder, force bool, progress func(int64)) error {
	switch {
	case dst == "-":
		return c.Pull(ctx, m, stdout, progress)
	case folder:
		// Extract refuses a path that exists; a missing parent folder is
		// named as for a file.
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			if err := userpath.CheckOutput(dst, false); err != nil {
				return fmt.Errorf("pull: %w", err)
			}
		}
		return bundle.Extract(dst, func(w io.Writer) error { return c.Pull(ctx, m, w, progress) })
	}
	out, err := userpath.Create(dst, userpath.Options{Force: force})
	var wrong *userpath.TypeError
	if errors.As(err, &wrong) {
		wrong.Want += ", or - to stream the image to stdout"
	}
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	defer out.Abort()
	if err := c.PullInto(ctx, m, out, progress); err != nil {
		return fmt.Errorf("pull to %s: %w", dst, err)
	}
	return out.Commit()
}

func printPull(cmd *cobra.Command, g *globals, ref catalog.Ref, digest string, m *catalog.Manifest, dst string, took time.Duration) error {
	if g.json {
		return printJSON(cmd.OutOrStdout(), map[string]any{"ref": ref.String(), "digest": digest, "kind": m.Kind,
			"size": m.Size, "path": dst, "seconds": took.Seconds()})
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "pulled %s %s: %s verified in %.1fs, %s/s\n", ref, digest, bytesIEC(m.Size),
		took.Seconds(), bytesIEC(int64(float64(m.Size)/max(took.Seconds(), 0.001))))
	return nil
}
