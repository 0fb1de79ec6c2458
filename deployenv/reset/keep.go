package reset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// capture is the keep-list taken from the old volume: the WIM (its tree
// under keepRoot) and every kept file.
type capture struct {
	wim  []byte
	kept []KeptFile
}

// captureKeep captures the keep-list from the old Windows volume on dev,
// read-only: wimlib in NTFS-3G mode for the files and their metadata, an
// ntfs-3g read-only mount for the hashes. A kept link or junction is
// refused: it could point anywhere once restored.
func captureKeep(ctx context.Context, dev string, p Plan, paths []string, scratch string) (*capture, error) {
	wim := filepath.Join(scratch, "keep.wim")
	cfg := filepath.Join(scratch, "keep.ini")
	if err := os.WriteFile(cfg, []byte(captureConfig(paths)), 0o600); err != nil {
		return nil, err
	}
	if _, err := tool(ctx, nil, "wimlib-imagex", "capture", dev, wim, "keep", "--config="+cfg); err != nil {
		return nil, fmt.Errorf("capture the keep-list: %w", err)
	}
	listed, err := wimList(ctx, wim)
	if err != nil {
		return nil, err
	}
	kept, err := hashVolume(ctx, dev, scratch, listed)
	if err != nil {
		return nil, err
	}
	usb, err := addUSB(ctx, wim, p.USBPackages, scratch)
	if err != nil {
		return nil, err
	}
	kept = mergeKept(kept, usb)
	if listed, err = wimList(ctx, wim); err != nil {
		return nil, err
	}
	if err := relocate(ctx, wim, listed, scratch); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(wim)
	if err != nil {
		return nil, err
	}
	return &capture{wim: b, kept: kept}, nil
}

// captureConfig is a wimlib capture configuration that excludes the whole
// volume but the keep paths (exceptions keep their parents too).
func captureConfig(paths []string) string {
	var b strings.Builder
	b.WriteString("[ExclusionList]\n/*\n")
	if len(paths) > 0 {
		b.WriteString("[ExclusionException]\n")
		for _, p := range paths {
			b.WriteString("/" + p + "\n")
		}
	}
	return b.String()
}

// wimList lists the paths of image 1 of a WIM, volume-relative.
func wimList(ctx context.Context, wim string) ([]string, error) {
	out, err := tool(ctx, nil, "wimlib-imagex", "dir", wim, "1")
	if err != nil {
		return nil, fmt.Errorf("list the keep-list: %w", err)
	}
	var paths []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimPrefix(l, "/"); l != "" {
			paths = append(paths, l)
		}
	}
	return paths, nil
}

// hashVolume hashes the regular files among paths on the volume, mounted
// read-only, and refuses links and junctions.
func hashVolume(ctx context.Context, dev, scratch string, paths []string) ([]KeptFile, error) {
	m, err := mountNTFS(ctx, dev, scratch, false)
	if err != nil {
		return nil, fmt.Errorf("mount the old volume read-only: %w", err)
	}
	kept, herr := hashPaths(m.dir, paths)
	if err := m.unmount(); herr == nil {
		herr = err
	}
	return kept, herr
}

// hashPaths hashes the regular files among paths under root.
func hashPaths(root string, paths []string) ([]KeptFile, error) {
	var kept []KeptFile
	for _, p := range paths {
		st, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return nil, fmt.Errorf("kept %s: %w", p, err)
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%w: keep-list entry %s is a link or junction, which could point outside what is kept once restored: remove it from the keep paths", ErrBadInput, p)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		sum, size, err := fileSHA256(filepath.Join(root, p))
		if err != nil {
			return nil, fmt.Errorf("hash kept %s: %w", p, err)
		}
		kept = append(kept, KeptFile{Path: p, Size: size, Before: sum})
	}
	return kept, nil
}

func fileSHA256(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// addUSB adds the USB packages to the capture under
// Recovery/Customizations, returning them as kept files.
func addUSB(ctx context.Context, wim string, pkgs []string, scratch string) ([]KeptFile, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	tree := filepath.Join(scratch, "usb")
	dir := filepath.Join(tree, "Recovery", "Customizations")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var kept []KeptFile
	for _, src := range pkgs {
		name := filepath.Base(src)
		sum, size, err := copyFile(src, filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("USB package %s: %w", src, err)
		}
		kept = append(kept, KeptFile{Path: path.Join("Recovery/Customizations", name), Size: size, Before: sum})
	}
	if _, err := tool(ctx, nil, "wimlib-imagex", "update", wim, "1", "--command=add \""+tree+"\" /"); err != nil {
		return nil, fmt.Errorf("add the USB packages to the keep-list: %w", err)
	}
	return kept, nil
}

// copyFile copies src to a new file dst, returning the SHA-256 and size
// of what it copied.
func copyFile(src, dst string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// mergeKept is kept with the USB packages, a package replacing a kept
// file of the same path (as it does on the volume), sorted by path.
func mergeKept(kept, usb []KeptFile) []KeptFile {
	byPath := map[string]KeptFile{}
	for _, k := range append(kept, usb...) {
		byPath[strings.ToLower(k.Path)] = k
	}
	out := make([]KeptFile, 0, len(byPath))
	for _, k := range byPath {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// relocate moves the capture's top-level entries under keepRoot, so that
// it applies beside an image (wimlib applies to an NTFS volume only where
// nothing exists yet).
func relocate(ctx context.Context, wim string, listed []string, scratch string) error {
	empty := filepath.Join(scratch, "empty")
	if err := os.MkdirAll(empty, 0o700); err != nil {
		return err
	}
	cmds := fmt.Sprintf("add %q /%s\n", empty, keepRoot)
	top := map[string]bool{}
	for _, p := range listed {
		t := strings.Split(p, "/")[0]
		if !top[t] {
			top[t] = true
			cmds += fmt.Sprintf("rename \"/%s\" \"/%s/%s\"\n", t, keepRoot, t)
		}
	}
	if _, err := tool(ctx, strings.NewReader(cmds), "wimlib-imagex", "update", wim, "1", "--force"); err != nil {
		return fmt.Errorf("move the keep-list under %s: %w", keepRoot, err)
	}
	return nil
}
