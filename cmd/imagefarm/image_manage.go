package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// openRef opens the catalog and parses the image reference arg.
func openRef(g *globals, arg string) (*catalog.Catalog, catalog.Ref, error) {
	ref, err := catalog.ParseRef(arg)
	if err != nil {
		return nil, ref, err
	}
	c, err := openCatalog(g, catalog.Options{})
	return c, ref, err
}

// findImage resolves ref and returns it with every ref that points at it.
func findImage(cmd *cobra.Command, c *catalog.Catalog, ref catalog.Ref) (catalog.Image, error) {
	m, digest, err := c.Manifest(cmd.Context(), ref)
	if err != nil {
		return catalog.Image{}, err
	}
	images, err := c.List(cmd.Context(), ref.Name)
	if err != nil {
		return catalog.Image{}, err
	}
	for _, img := range images {
		if img.Digest == digest {
			return img, nil
		}
	}
	return catalog.Image{Name: ref.Name, Digest: digest, Manifest: m}, nil
}

func newImageInspectCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect NAME:VERSION|NAME:CHANNEL|NAME@sha256:DIGEST",
		Short: "Show an image's manifest; for a WIM, its images with names, editions and builds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ref, err := openRef(g, args[0])
			if err != nil {
				return err
			}
			img, err := findImage(cmd, c, ref)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), newImageJSON(img, true))
			}
			return printInspect(cmd.OutOrStdout(), img)
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the image and its full manifest as JSON")
	return cmd
}

func printInspect(w io.Writer, img catalog.Image) error {
	m := img.Manifest
	zero := 0
	for _, ch := range m.Chunks {
		if ch.Zero {
			zero++
		}
	}
	tw := newNotedTable(w)
	row := func(k, v string) { tw.rowf("%s:\t%s", k, v) }
	row("Name", img.Name)
	row("Version", dash(img.Version))
	row("Channels", dash(strings.Join(img.Channels, ", ")))
	row("Digest", img.Digest)
	row("Kind", string(m.Kind))
	row("Size", fmt.Sprintf("%s (%d bytes)", bytesIEC(m.Size), m.Size))
	row("Stored", fmt.Sprintf("%s in %s of %s (%d zero)", bytesIEC(m.StoredBytes()), plural(len(m.Chunks), "chunk"), bytesIEC(m.ChunkSize), zero))
	row("Created", m.Created.Format(time.RFC3339))
	row("Models", dash(strings.Join(m.Models, ", ")))
	var labels []string
	for k, v := range m.Labels {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	row("Labels", dash(strings.Join(labels, ", ")))
	row("Source", dash(m.Source))
	if wi := m.WIM; wi != nil {
		row("WIM", fmt.Sprintf("%s, part %d of %d, %s compression, boot index %d",
			plural(wi.ImageCount, "image"), wi.Part, wi.TotalParts, wi.Compression, wi.BootIndex))
	}
	if err := tw.flush(); err != nil {
		return err
	}
	if m.WIM == nil || len(m.WIM.Images) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newNotedTable(w)
	tw.rowf("INDEX\tNAME\tEDITION\tBUILD\tARCH\tSIZE\tFILES")
	for _, im := range m.WIM.Images {
		tw.rowf("%d\t%s\t%s\t%s\t%s\t%s\t%d", im.Index, im.Name, dash(im.Edition), dash(im.Build), dash(im.Arch), bytesIEC(im.TotalBytes), im.FileCount)
	}
	return tw.flush()
}

func newImageTagCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tag REF CHANNEL",
		Short: "Point a channel (such as stable) of the image's name at REF, moving it if it exists",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := catalog.ParseRef(args[0])
			if err != nil {
				return err
			}
			refs, done, err := openRefChanger(g, cmd.ErrOrStderr(), nil)
			if err != nil {
				return err
			}
			defer done()
			digest, err := refs.Tag(cmd.Context(), ref, args[1])
			if err != nil {
				return err
			}
			channel := ref.Name + ":" + args[1]
			if g.json {
				return printJSON(cmd.OutOrStdout(), newChangeJSON(channel, digest, lastRecord(refs)))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s%s\n", channel, digest, auditNote(lastRecord(refs)))
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

func newImageRmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm NAME:VERSION|NAME:CHANNEL|NAME@sha256:DIGEST",
		Short: "Remove a ref (with a digest: every ref of the name pointing at it); image gc frees the space",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := catalog.ParseRef(args[0])
			if err != nil {
				return err
			}
			refs, done, err := openRefChanger(g, cmd.ErrOrStderr(), nil)
			if err != nil {
				return err
			}
			defer done()
			removed, err := refs.Remove(cmd.Context(), ref)
			if err != nil && len(removed) == 0 {
				return err
			}
			recs := refs.Records()
			out := struct {
				Removed []changeJSON `json:"removed"`
			}{}
			for i, r := range removed {
				var rec *imagefarmv1.AuditRecord
				if i < len(recs) {
					rec = recs[i]
				}
				out.Removed = append(out.Removed, newChangeJSON(r.Ref.String(), r.Digest, rec))
				if !g.json || err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "removed %s (was %s)%s\n", r.Ref, r.Digest, auditNote(rec))
				}
			}
			if g.json && err == nil {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

func newImageGCCmd(g *globals) *cobra.Command {
	var (
		grace  time.Duration
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete manifests no ref points at and chunks no manifest uses, once older than the grace period",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCatalog(g, catalog.Options{})
			if err != nil {
				return err
			}
			res, err := c.GC(cmd.Context(), grace, dryRun)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s and %s (%s); kept %s (%s) in use and %d younger than %s\n",
				verb, plural(res.Manifests, "manifest"), plural(res.Chunks, "chunk"), bytesIEC(res.Bytes),
				plural(res.LiveChunks, "chunk"), bytesIEC(res.LiveBytes), res.KeptYoung, grace)
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", catalog.DefaultGrace, "keep unreferenced objects younger than this (protects pushes in flight)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only say what would be deleted")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}
