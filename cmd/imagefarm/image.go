package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Push, list, inspect, pull and remove images in the catalog",
	}
	cmd.AddCommand(newImagePushCmd(g), newImageLsCmd(g), newImageInspectCmd(g), newImagePullCmd(g),
		newImageTagCmd(g), newImageRmCmd(g), newImageGCCmd(g), newImageSignCmd(g))
	return cmd
}

// errNoStore is why a command that reads or writes the catalog cannot start.
var errNoStore = errors.New("no image store: pass --store file:///PATH or --store s3://BUCKET/PREFIX?endpoint=HOST:PORT, or set IMAGEFARM_STORE")

// openCatalog opens the catalog in --store with opts: the one way every
// command (and the controller, imager and dev farm they start) opens it.
func openCatalog(g *globals, opts catalog.Options) (*catalog.Catalog, error) {
	if g.store == "" {
		return nil, errNoStore
	}
	s, err := storage.Open(g.store, storage.Options{})
	if err != nil {
		return nil, err
	}
	return catalog.New(s, opts)
}

func newImagePushCmd(g *globals) *cobra.Command {
	var (
		kind      string
		models    []string
		labels    map[string]string
		channels  []string
		chunkSize int64
		signKey   string
	)
	cmd := &cobra.Command{
		Use:   "push NAME:VERSION FILE|FOLDER",
		Short: "Push a file (a folder for --kind winpe, drivers, hook or recovery) as a new image version; chunks the store has already are not uploaded again",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := catalog.ParseRef(args[0])
			if err != nil {
				return err
			}
			if ref.Digest != "" {
				return fmt.Errorf("push takes NAME:VERSION, not a digest")
			}
			if !slices.Contains(catalog.Kinds, catalog.Kind(kind)) {
				return fmt.Errorf("--kind %q: want one of %v", kind, catalog.Kinds)
			}
			if catalog.Kind(kind) == catalog.KindBootEnv {
				return fmt.Errorf("--kind bootenv: a deploy environment is built and pushed by imagefarm netboot build-env --push %s", ref)
			}
			key, err := loadSignKey(signKey)
			if err != nil {
				return err
			}
			c, err := openCatalog(g, catalog.Options{})
			if err != nil {
				return err
			}
			refs, done, err := openPushRefs(cmd, g, c, ref)
			if err != nil {
				return err
			}
			defer done()
			path, source, cleanup, err := pushSource(cmd.Context(), args[1], catalog.Kind(kind))
			if err != nil {
				return err
			}
			defer cleanup()
			p, err := pushFile(cmd, g, c, refs, path, catalog.PushOptions{
				Name: ref.Name, Version: ref.Tag, Kind: catalog.Kind(kind), Models: models, Source: source,
				Labels: labels, Channels: channels, ChunkSize: chunkSize, SignKey: key,
			})
			if err != nil {
				return err
			}
			return printPush(cmd.OutOrStdout(), g, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kind, "kind", string(catalog.KindDisk), fmt.Sprintf("what the file is: %v; %s are folders (recovery: a folder or a zip)", catalog.Kinds, folderKinds()))
	f.StringArrayVar(&models, "model", nil, "exact device model the image applies to (repeatable)")
	f.StringToStringVar(&labels, "label", nil, "label key=value (repeatable)")
	f.StringArrayVar(&channels, "channel", nil, "channel to point at this version, such as stable (repeatable)")
	positiveInt64Var(f, &chunkSize, "chunk-size", catalog.DefaultChunkSize, "chunk size in bytes (a multiple of 4096)")
	f.StringVar(&signKey, "sign-key", os.Getenv("IMAGEFARM_SIGN_KEY"), signKeyUsage)
	f.BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

// pushed is what a push stored.
type pushed struct {
	ref  catalog.Ref
	res  *catalog.PushResult
	took time.Duration
	recs []*imagefarmv1.AuditRecord // the audit records of its ref changes; none: unaudited
}

// pushFile pushes the file at path to c as opts says (opts.Progress and
// opts.Refs are set here), its refs changed through refs, and warns when
// it is not signed: the one way image push, media build --push and
// netboot build-env --push push.
func pushFile(cmd *cobra.Command, g *globals, c *catalog.Catalog, refs refChanger, path string, opts catalog.PushOptions) (*pushed, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	bar := newProgressBar("push", fi.Size())
	start := time.Now()
	opts.Progress, opts.Refs = bar.Add, refs
	res, err := c.PushFile(cmd.Context(), path, opts)
	bar.Done(err)
	if err != nil {
		return nil, err
	}
	ref := catalog.Ref{Name: opts.Name, Tag: opts.Version}
	if opts.SignKey == nil && !g.json {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is not signed; imagers with --trusted-keys refuse it until it is (imagefarm image sign)\n", ref)
	}
	return &pushed{ref: ref, res: res, took: time.Since(start), recs: refs.Records()}, nil
}

// auditSequences are the sequence numbers of the push's audit records.
func (p *pushed) auditSequences() []uint64 {
	seqs := []uint64{}
	for _, r := range p.recs {
		seqs = append(seqs, r.GetSequence())
	}
	return seqs
}

// json is how --json prints the push.
func (p *pushed) json() map[string]any {
	res := p.res
	return map[string]any{
		"ref": p.ref.String(), "digest": res.Digest, "size": res.Manifest.Size, "chunks": res.Chunks,
		"zero_chunks": res.ZeroChunks, "new_chunks": res.NewChunks, "new_bytes": res.NewBytes,
		"stored_bytes": res.Manifest.StoredBytes(), "seconds": p.took.Seconds(),
		"audited": len(p.recs) > 0, "audit_sequences": p.auditSequences(),
	}
}

// printPush says what a push stored, and the audit records of its ref
// changes.
func printPush(w io.Writer, g *globals, p *pushed) error {
	if g.json {
		return printJSON(w, p.json())
	}
	res := p.res
	fmt.Fprintf(w, "pushed %s %s\n", p.ref, res.Digest)
	if seqs := p.auditSequences(); len(seqs) > 0 {
		fmt.Fprintf(w, "  recorded in the audit trail: %s\n", strings.Trim(fmt.Sprint(seqs), "[]"))
	}
	fmt.Fprintf(w, "  %s in %s (%d zero, not stored); %s stored, %s of it new in %s; %.1fs, %s/s\n",
		bytesIEC(res.Manifest.Size), plural(res.Chunks, "chunk"), res.ZeroChunks,
		bytesIEC(res.Manifest.StoredBytes()), bytesIEC(res.NewBytes), plural(res.NewChunks, "new chunk"),
		p.took.Seconds(), bytesIEC(int64(float64(res.Manifest.Size)/max(p.took.Seconds(), 0.001))))
	return nil
}

func newImageLsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List images: every version and the channels pointing at it",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCatalog(g, catalog.Options{})
			if err != nil {
				return err
			}
			images, err := c.List(cmd.Context(), strings.Join(args, ""))
			if err != nil {
				return err
			}
			if g.json {
				out := make([]imageJSON, 0, len(images))
				for _, img := range images {
					out = append(out, newImageJSON(img, false))
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := newNotedTable(cmd.OutOrStdout())
			tw.rowf("NAME\tVERSION\tCHANNELS\tKIND\tSIZE\tSTORED\tCREATED\tDIGEST")
			for _, img := range images {
				m := img.Manifest
				tw.rowf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", img.Name, dash(img.Version), dash(strings.Join(img.Channels, ",")),
					m.Kind, bytesIEC(m.Size), bytesIEC(m.StoredBytes()), m.Created.Local().Format("2006-01-02 15:04"), img.Digest[:19])
			}
			return tw.flush()
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// imageJSON is how images are printed with --json.
type imageJSON struct {
	Name        string            `json:"name"`
	Version     string            `json:"version,omitempty"`
	Channels    []string          `json:"channels,omitempty"`
	Digest      string            `json:"digest"`
	Kind        catalog.Kind      `json:"kind"`
	Size        int64             `json:"size"`
	StoredBytes int64             `json:"stored_bytes"`
	Created     time.Time         `json:"created"`
	Models      []string          `json:"models,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Manifest    *catalog.Manifest `json:"manifest,omitempty"`
}

func newImageJSON(img catalog.Image, withManifest bool) imageJSON {
	m := img.Manifest
	out := imageJSON{Name: img.Name, Version: img.Version, Channels: img.Channels, Digest: img.Digest, Kind: m.Kind,
		Size: m.Size, StoredBytes: m.StoredBytes(), Created: m.Created, Models: m.Models, Labels: m.Labels}
	if withManifest {
		out.Manifest = m
	}
	return out
}
