package media

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/imagefarm/imagefarm/media/fatdisk"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/wim"
)

// bootFiles are what UEFI firmware and WinPE need on the key.
var bootFiles = []string{"EFI/Boot/bootx64.efi", "sources/boot.wim"}

// builder downloads a key's inputs into a work folder and lists the files
// of the key.
type builder struct {
	c        *catalog.Catalog
	spec     Spec
	inputs   []Input
	work     string
	log      *slog.Logger
	files    []fatdisk.File
	wimParts int
	ppkgs    []string // file names under ppkg/
	updates  []keyUpdate
	hooks    []keyHook
}

func (b *builder) fetch(ctx context.Context) error {
	for i, in := range b.inputs {
		var err error
		switch in.Role {
		case "winpe":
			err = b.winPE(ctx, in)
		case "wim":
			err = b.wim(ctx, in)
		case "drivers":
			var dir string
			if dir, err = b.extract(ctx, in, fmt.Sprint("drivers-", i)); err == nil {
				err = b.addTree(dir, path.Join("drivers", driverFolder(b.spec.Model), in.Ref.Name))
			}
		case "ppkg":
			name := in.Ref.Name + ".ppkg"
			local := filepath.Join(b.work, name)
			if err = b.c.PullFile(ctx, in.Manifest, local, nil); err == nil {
				b.files = append(b.files, fatdisk.File{Path: "ppkg/" + name, Source: local})
				b.ppkgs = append(b.ppkgs, name)
			}
		case "updates":
			err = b.update(ctx, in, len(b.updates)+1, "updates")
		case "hook":
			err = b.hook(ctx, in, len(b.hooks)+1, "hooks")
		case "recovery":
			err = b.recovery(ctx, in)
		}
		if err != nil {
			return fmt.Errorf("--%s %s: %w", in.Role, in.Ref, err)
		}
		b.log.Info("media input ready", "role", in.Role, "ref", in.Ref.String(), "digest", in.Digest)
	}
	if b.spec.Recovery.Name != "" {
		return nil // the manufacturer's drive, as it is
	}
	scripts, err := writeScripts(b)
	b.files = append(b.files, scripts...)
	return err
}

// extract pulls a bundle and unpacks it into a new folder of the work
// folder; every byte is verified on the way.
func (b *builder) extract(ctx context.Context, in Input, name string) (string, error) {
	dir := filepath.Join(b.work, name)
	err := bundle.Extract(dir, func(w io.Writer) error { return b.c.Pull(ctx, in.Manifest, w, nil) })
	return dir, err
}

// winPE unpacks the WinPE bundle to the key's root, refusing one that
// lacks the files it boots from.
func (b *builder) winPE(ctx context.Context, in Input) error {
	dir, err := b.extract(ctx, in, "winpe")
	if err != nil {
		return err
	}
	var missing []string
	for _, f := range bootFiles {
		// FAT32 and UEFI ignore case; WinPE media are not consistent in it.
		if !existsFold(dir, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: no %s; a WinPE media folder has %s", ErrNotBootable,
			strings.Join(missing, " and no "), strings.Join(bootFiles, " and "))
	}
	return b.addTree(dir, "")
}

// existsFold reports whether the slash path rel is a file under dir,
// ignoring case.
func existsFold(dir, rel string) bool {
	_, ok := findFold(dir, rel)
	return ok
}

// findFold is the path of the file the slash path rel names under dir,
// ignoring case; ok is false when there is none.
func findFold(dir, rel string) (string, bool) {
	for _, name := range strings.Split(rel, "/") {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", false
		}
		found := false
		for _, e := range entries {
			if strings.EqualFold(e.Name(), name) {
				dir, found = filepath.Join(dir, e.Name()), true
				break
			}
		}
		if !found {
			return "", false
		}
	}
	fi, err := os.Stat(dir)
	return dir, err == nil && fi.Mode().IsRegular()
}

// addTree puts every file and folder under dir on the key under prefix.
func (b *builder) addTree(dir, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f := fatdisk.File{Path: path.Join(prefix, filepath.ToSlash(rel)), Dir: d.IsDir()}
		if !d.IsDir() {
			f.Source = p
		}
		b.files = append(b.files, f)
		return nil
	})
}

// driverFolder is the folder of drivers/ for model: its name, with what
// FAT32 or a batch file cannot hold replaced.
func driverFolder(model string) string {
	if model == "" {
		return "all-models"
	}
	return batchSafe(model)
}

// wim pulls the WIM, exports the chosen image and splits the result when
// it is larger than the split size.
func (b *builder) wim(ctx context.Context, in Input) error {
	dir := filepath.Join(b.work, "wim")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	file := filepath.Join(dir, "install.wim")
	if err := b.c.PullFile(ctx, in.Manifest, file, nil); err != nil {
		return err
	}
	// The GUID wimlib would draw at random is derived from the input.
	sum := sha256.Sum256([]byte(fmt.Sprintf("imagefarm media wim\x00%s\x00%d", in.Digest, b.spec.WIMIndex)))
	guid := [16]byte(sum[:16])
	if b.spec.WIMIndex > 0 && in.Manifest.WIM.ImageCount > 1 {
		exported := filepath.Join(dir, "export.wim")
		if err := wimlib(ctx, "export", file, strconv.Itoa(b.spec.WIMIndex), exported); err != nil {
			return err
		}
		if err := wim.SetGUID(exported, guid); err != nil {
			return err
		}
		b.log.Info("media WIM image exported", "index", b.spec.WIMIndex)
		file = exported
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	if fi.Size() <= b.spec.SplitSize {
		b.wimParts = 1
		b.files = append(b.files, fatdisk.File{Path: "images/install.wim", Source: file})
		return nil
	}
	return b.split(ctx, file, guid)
}

// split cuts the WIM into .swm parts of at most the split size (wimlib
// keeps each file's data in one part, so a part holding one larger file
// is larger; fatdisk refuses a part of 4 GiB or more).
func (b *builder) split(ctx context.Context, file string, guid [16]byte) error {
	dir := filepath.Join(b.work, "swm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := wimlib(ctx, "split", file, filepath.Join(dir, "install.swm"), strconv.FormatInt(b.spec.SplitSize>>20, 10)); err != nil {
		return err
	}
	parts, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, p := range parts {
		local := filepath.Join(dir, p.Name())
		if err := wim.SetGUID(local, guid); err != nil {
			return err
		}
		b.files = append(b.files, fatdisk.File{Path: "images/" + p.Name(), Source: local})
	}
	b.wimParts = len(parts)
	b.log.Info("media WIM split", "parts", len(parts), "split_size", b.spec.SplitSize)
	return nil
}

// wimlib runs wimlib-imagex.
func wimlib(ctx context.Context, args ...string) error {
	bin, err := exec.LookPath("wimlib-imagex")
	if err != nil {
		return fmt.Errorf("wimlib-imagex %s: %w (install wimlib: Debian's wimtools)", args[0], err)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wimlib-imagex %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
