package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// version is imagefarm's version, set at build time with
// -ldflags "-X main.version=v1.2.3"; otherwise the module's build info.
var version string

func imagefarmVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += "+" + s.Value
		}
	}
	return v
}

func newMediaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "media",
		Short: "Build bootable USB media (WinPE, a WIM, drivers, provisioning packages, deploy scripts) as disk images",
	}
	cmd.AddCommand(newMediaBuildCmd(g))
	return cmd
}

// mediaFlags are the flags of imagefarm media build.
type mediaFlags struct {
	winpe, wim, wimIndex, model, splitSize, push, out, workDir, signKey, recovery string
	drivers, ppkgs, updates, hooks, channels                                      []string
	force                                                                         bool
	trust                                                                         trustFlags
}

func newMediaBuildCmd(g *globals) *cobra.Command {
	var mf mediaFlags
	cmd := &cobra.Command{
		Use:   "build (--winpe REF --wim REF [--drivers REF]... [--ppkg REF]... [--updates REF]... [--hook REF]... | --recovery REF) --model MODEL (--push NAME:VERSION | --out FILE)",
		Short: "Compose a UEFI-bootable USB key image from catalog items and push it as a disk image; the same inputs give the same image",
		Long: `Compose a UEFI-bootable USB key image: one FAT32 partition (MBR table) with
the WinPE files at its root, the WIM under images/ (split into .swm parts when it
is larger than --split-size), drivers under drivers/<model>/, provisioning packages
under ppkg/, and deploy.cmd with CreatePartitions-UEFI.txt, which partition the
disk named on deploy.cmd's command line (or the only internal one) for UEFI/GPT
after refusing a USB, removable or boot disk and the key's own and asking the
technician to confirm it, apply the WIM with DISM, add the update packages (in
order), drivers and packages, and run bcdboot; hooks' scripts run at their points.
With --recovery, the key is a manufacturer's recovery drive (kind recovery), its
files laid onto the FAT32 partition as they are. Inputs that list device models
are only put on media for one of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, pushRef, err := mf.spec()
			if err != nil {
				return err
			}
			if mf.recovery != "" && cmd.Flags().Changed("split-size") {
				return errors.New("--split-size: --recovery lays the recovery drive onto the key as it is and splits nothing; leave it out")
			}
			c, err := openCatalog(g, catalog.Options{})
			if err != nil {
				return err
			}
			key, err := loadSignKey(mf.signKey)
			if err != nil {
				return err
			}
			if err := mf.verifyInputs(cmd.Context(), c, spec); err != nil {
				return err
			}
			var refs refChanger
			if pushRef != nil {
				// Refused for the role or a taken name before minutes of building.
				var done func()
				if refs, done, err = openPushRefs(cmd, g, c, *pushRef); err != nil {
					return err
				}
				defer done()
				if spec.Out == "" {
					tmp, remove, err := userpath.TempFolder(spec.WorkDir, "imagefarm-media-out-")
					if err != nil {
						return err
					}
					defer remove()
					spec.Out = filepath.Join(tmp, "media.img")
				}
			}
			spec.Log = slog.Default()
			res, err := media.Build(cmd.Context(), c, spec)
			if err != nil {
				return err
			}
			return finishMedia(cmd, g, c, refs, res, spec, mf.out, pushRef, mf.channels, key)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mf.winpe, "winpe", "", "WinPE bundle (kind winpe) with EFI/Boot/bootx64.efi and sources/boot.wim")
	f.StringVar(&mf.wim, "wim", "", "the Windows image to deploy (kind wim)")
	f.StringVar(&mf.wimIndex, "wim-index", "all", "the WIM's image to put on the key (exported with wimlib-imagex), or all")
	f.StringArrayVar(&mf.drivers, "drivers", nil, "driver bundle (kind drivers), added with DISM /Add-Driver /Recurse (repeatable)")
	f.StringArrayVar(&mf.ppkgs, "ppkg", nil, "provisioning package (kind ppkg), added with DISM /Add-ProvisioningPackage (repeatable)")
	f.StringArrayVar(&mf.updates, "updates", nil, "update package (kind update, .msu or .cab), added with DISM /Add-Package after the image is applied, in the order given (repeatable)")
	f.StringArrayVar(&mf.hooks, "hook", nil, "hook folder (kind hook): its scripts, named after their points ("+strings.Join(media.HookPoints, ", ")+"), run by deploy.cmd there; a failing one stops the deploy (repeatable)")
	f.StringVar(&mf.recovery, "recovery", "", "a manufacturer's recovery drive (kind recovery) that makes the whole key, as it is, instead of --winpe and --wim")
	f.StringVar(&mf.model, "model", "", "the exact device model the key is for; inputs for other models are refused")
	f.StringVar(&mf.splitSize, "split-size", "4000MiB", "split a WIM larger than this into .swm parts (at most 4095MiB: FAT32 files are under 4 GiB)")
	f.StringVar(&mf.push, "push", "", "push the image as NAME:VERSION, kind disk, labelled with its inputs")
	f.StringArrayVar(&mf.channels, "channel", nil, "with --push: channel to point at the new version (repeatable)")
	f.StringVar(&mf.out, "out", "", "write the image to this file, a new path (also when pushing)")
	f.BoolVar(&mf.force, "force", false, "replace the --out file if it exists (a regular file only)")
	f.StringVar(&mf.workDir, "work-dir", "", "where a folder for the inputs is made, and removed after (default: the system's temporary folder); needs about twice the inputs' size")
	f.StringVar(&mf.signKey, "sign-key", os.Getenv("IMAGEFARM_SIGN_KEY"), signKeyUsage)
	mf.trust.add(cmd)
	f.BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

// verifyInputs checks, when --trusted-keys is given, that every input is
// signed by a trusted key: media built from unsigned inputs and then
// signed would launder them.
func (mf *mediaFlags) verifyInputs(ctx context.Context, c *catalog.Catalog, spec media.Spec) error {
	ring, err := mf.trust.keyRing()
	if err != nil || ring == nil {
		return err
	}
	refs := slices.Concat([]catalog.Ref{spec.WinPE, spec.WIM}, spec.Drivers, spec.PPKGs, spec.Updates, spec.Hooks)
	if spec.Recovery.Name != "" {
		refs = []catalog.Ref{spec.Recovery}
	}
	for _, ref := range refs {
		m, digest, err := c.Manifest(ctx, ref)
		if err != nil {
			return err
		}
		if _, err := c.Verify(ctx, m, digest, ring); err != nil {
			return fmt.Errorf("input %s: %w", ref, err)
		}
	}
	return nil
}

// spec turns the flags into a media.Spec and the ref to push, if any.
func (mf *mediaFlags) spec() (media.Spec, *catalog.Ref, error) {
	spec := media.Spec{Model: mf.model, Out: mf.out, Replace: mf.force, WorkDir: mf.workDir}
	if (mf.winpe == "" || mf.wim == "") && mf.recovery == "" {
		return spec, nil, errors.New("--winpe and --wim are required (or --recovery, for a manufacturer's recovery drive)")
	}
	if mf.workDir != "" {
		if err := userpath.CheckFolder(mf.workDir); err != nil {
			return spec, nil, fmt.Errorf("--work-dir: %w", err)
		}
	}
	if mf.push == "" && mf.out == "" {
		return spec, nil, errors.New("say where the image goes: --push NAME:VERSION, --out FILE, or both")
	}
	var err error
	refs := func(args []string) ([]catalog.Ref, error) {
		var out []catalog.Ref
		for _, a := range args {
			r, err := catalog.ParseRef(a)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	for _, one := range []struct {
		arg string
		ref *catalog.Ref
	}{{mf.winpe, &spec.WinPE}, {mf.wim, &spec.WIM}, {mf.recovery, &spec.Recovery}} {
		if one.arg == "" {
			continue
		}
		if *one.ref, err = catalog.ParseRef(one.arg); err != nil {
			return spec, nil, err
		}
	}
	if spec.Drivers, err = refs(mf.drivers); err != nil {
		return spec, nil, err
	}
	if spec.PPKGs, err = refs(mf.ppkgs); err != nil {
		return spec, nil, err
	}
	if spec.Updates, err = refs(mf.updates); err != nil {
		return spec, nil, err
	}
	if spec.Hooks, err = refs(mf.hooks); err != nil {
		return spec, nil, err
	}
	if mf.wimIndex != "all" {
		if spec.WIMIndex, err = strconv.Atoi(mf.wimIndex); err != nil || spec.WIMIndex < 1 {
			return spec, nil, fmt.Errorf("--wim-index %q: want an image index (1, 2, ...) or all", mf.wimIndex)
		}
	}
	size, err := humanize.ParseBytes(mf.splitSize)
	if err != nil || size < 1<<20 || size > media.MaxSplitSize { // 0 would be media.Config's default
		return spec, nil, fmt.Errorf("--split-size %q: want a size from 1MiB to %dMiB", mf.splitSize, media.MaxSplitSize>>20)
	}
	spec.SplitSize = int64(size)
	if mf.push == "" {
		return spec, nil, nil
	}
	ref, err := catalog.ParseRef(mf.push)
	if err != nil || ref.Digest != "" {
		return spec, nil, fmt.Errorf("--push %q: want NAME:VERSION", mf.push)
	}
	return spec, &ref, nil
}

// finishMedia pushes the image if asked and says what was built; out is
// the --out file, empty when the image was only pushed.
func finishMedia(cmd *cobra.Command, g *globals, c *catalog.Catalog, refs refChanger, res *media.Result, spec media.Spec, out string, pushRef *catalog.Ref, channels []string, key *catalog.SigningKey) error {
	w := cmd.OutOrStdout()
	var p *pushed
	if pushRef != nil {
		var models []string
		if spec.Model != "" {
			models = []string{spec.Model}
		}
		var err error
		p, err = pushFile(cmd, g, c, refs, spec.Out, catalog.PushOptions{
			Name: pushRef.Name, Version: pushRef.Tag, Kind: catalog.KindDisk, Models: models,
			Labels: res.Labels(imagefarmVersion()), Channels: channels, Source: "media.img", SignKey: key,
		})
		if err != nil {
			return err
		}
	}
	if g.json {
		j := map[string]any{"digest": res.Digest, "size": res.Size, "wim_parts": res.WIMParts, "model": res.Model,
			"inputs": res.Labels(imagefarmVersion()), "fetch_seconds": res.Fetch.Seconds(), "write_seconds": res.Write.Seconds()}
		if out != "" {
			j["out"] = out
		}
		if p != nil {
			j["ref"], j["manifest_digest"], j["new_bytes"], j["audited"] = pushRef.String(), p.res.Digest, p.res.NewBytes, len(p.recs) > 0
		}
		return printJSON(w, j)
	}
	model := res.Model
	if model == "" {
		model = "any model (universal inputs)"
	}
	what := "WIM in " + plural(res.WIMParts, "part")
	if res.WIMParts == 0 {
		what = "a manufacturer's recovery drive"
	}
	fmt.Fprintf(w, "built media for %s: %s %s, %s; inputs in %.1fs, image in %.1fs\n", model, bytesIEC(res.Size),
		res.Digest, what, res.Fetch.Seconds(), res.Write.Seconds())
	for _, in := range res.Inputs {
		fmt.Fprintf(w, "  %-8s %s@%s\n", in.Role, in.Ref, in.Digest)
	}
	if out != "" {
		fmt.Fprintf(w, "  written to %s\n", out)
	}
	if p != nil {
		return printPush(w, g, p)
	}
	return nil
}
