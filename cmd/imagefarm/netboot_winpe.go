package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/netboot"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// winpeFlags are netboot serve's flags of the WinPE path.
type winpeFlags struct {
	winpe, wim, model, wimboot string
	deploy                     []string
}

// checkWinPEFlags refuses WinPE flags that cannot work together, before
// anything is fetched.
func (f *netbootServeFlags) checkWinPEFlags() error {
	w := f.winpe
	switch {
	case w.winpe == "" && (w.wimboot != "" || w.wim != "" || w.model != ""):
		return errors.New("--wimboot, --winpe-wim and --winpe-model are for the WinPE path: give the WinPE with --winpe NAME:VERSION (a winpe bundle from the catalog)")
	case w.winpe == "" && len(w.deploy) > 0:
		return errors.New("--deploy-winpe boots WinPE through wimboot: start netboot serve with --wimboot FILE and --winpe NAME:VERSION")
	case w.winpe == "":
		return nil
	case w.wimboot == "":
		return errors.New("--winpe boots through wimboot, which is not in Debian and not shipped with imagefarm: download it from https://ipxe.org/wimboot and give --wimboot FILE")
	case w.wim == "":
		return errors.New("--winpe needs --winpe-wim NAME:VERSION: the Windows image its deploy.cmd applies, as media build --wim")
	}
	return netboot.CheckWimboot(w.wimboot)
}

// fetchWinPE fetches --winpe into --env-cache, checked, writes the deploy
// scripts media build would put on a key for --winpe-wim and
// --winpe-model, and returns what the service serves (nil without
// --winpe) and a function that removes the scripts.
func (f *netbootServeFlags) fetchWinPE(ctx context.Context, g *globals) (*netboot.WinPE, func(), error) {
	noop := func() {}
	if err := f.checkWinPEFlags(); err != nil || f.winpe.winpe == "" {
		return nil, noop, err
	}
	spec := media.Spec{Model: f.winpe.model}
	var err error
	if spec.WinPE, err = catalog.ParseRef(f.winpe.winpe); err != nil {
		return nil, noop, fmt.Errorf("--winpe: %w", err)
	}
	if spec.WIM, err = catalog.ParseRef(f.winpe.wim); err != nil {
		return nil, noop, fmt.Errorf("--winpe-wim: %w", err)
	}
	fc, err := f.fetchConfig(g, spec.WinPE)
	if err != nil {
		return nil, noop, err
	}
	scripts, err := media.DeployScripts(ctx, fc.Catalog, spec)
	if err != nil {
		return nil, noop, err
	}
	b, err := deployenv.FetchBundle(ctx, fc, catalog.KindWinPE)
	if err != nil {
		return nil, noop, fmt.Errorf("--winpe: %w", err)
	}
	boot, err := media.WimbootFiles(b.Dir)
	if err != nil {
		return nil, noop, fmt.Errorf("--winpe %s: %w", spec.WinPE, err)
	}
	dir, remove, err := userpath.TempFolder(f.envCache, ".winpe-scripts-")
	if err != nil {
		return nil, noop, fmt.Errorf("--env-cache: %w", err)
	}
	w, err := winpeFiles(b, boot, scripts, dir, f.winpe.wimboot)
	if err != nil {
		remove()
		return nil, noop, err
	}
	slog.Info("WinPE", "ref", spec.WinPE.String(), "digest", b.Digest, "wim", spec.WIM.String(), "model", spec.Model, "id", w.ID)
	return w, remove, nil
}

// winpeFiles writes the scripts into dir and lists what wimboot is handed:
// BCD, boot.sdi, boot.wim, startnet.cmd, then the deploy scripts. Its id
// names the WinPE and the scripts' bytes.
func winpeFiles(b *deployenv.Bundle, boot [][2]string, scripts map[string][]byte, dir, wimboot string) (*netboot.WinPE, error) {
	w := &netboot.WinPE{Wimboot: wimboot}
	for _, f := range boot {
		w.Files = append(w.Files, netboot.WinPEFile{Name: f[0], Path: f[1]})
	}
	scripts["startnet.cmd"] = []byte(media.Startnet)
	h := sha256.New()
	h.Write([]byte(b.Digest))
	names := slices.DeleteFunc(slices.Sorted(maps.Keys(scripts)), func(n string) bool { return n == "startnet.cmd" })
	for _, n := range append([]string{"startnet.cmd"}, names...) {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, scripts[n], 0o644); err != nil {
			return nil, fmt.Errorf("WinPE scripts: %w", err)
		}
		h.Write([]byte(n + "\x00"))
		h.Write(scripts[n])
		w.Files = append(w.Files, netboot.WinPEFile{Name: n, Path: p})
	}
	w.ID = hex.EncodeToString(h.Sum(nil))[:16]
	return w, nil
}

// fetchConfig is how --env and --winpe are fetched: into --env-cache,
// checked against --trusted-keys (or not, with --allow-unsigned).
func (f *netbootServeFlags) fetchConfig(g *globals, ref catalog.Ref) (deployenv.FetchConfig, error) {
	keys, err := f.trust.keyRing()
	if err != nil {
		return deployenv.FetchConfig{}, err
	}
	if keys == nil && !f.trust.allowUnsigned {
		return deployenv.FetchConfig{}, errors.New("no trusted keys for --env and --winpe: pass --trusted-keys FILE (the farm's signing.pub from imagefarm key init) or set IMAGEFARM_TRUSTED_KEYS; --allow-unsigned serves images nobody signed")
	}
	cat, err := openCatalog(g, catalog.Options{})
	if err != nil {
		return deployenv.FetchConfig{}, err
	}
	if err := userpath.MakeFolder(f.envCache, 0o755); err != nil {
		return deployenv.FetchConfig{}, fmt.Errorf("--env-cache: %w", err)
	}
	return deployenv.FetchConfig{Catalog: cat, Ref: ref, TrustedKeys: keys, AllowUnsigned: f.trust.allowUnsigned, Dir: f.envCache}, nil
}
