package main

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// pushSource returns the file to push for arg: arg itself, or for a kind
// that is a folder (winpe, drivers, hook, recovery) the folder, or for
// recovery a zip of it, packed as a bundle in a temporary file, which
// cleanup removes. source is what the manifest records as the pushed
// file's name. Packing stops when ctx is done.
func pushSource(ctx context.Context, arg string, kind catalog.Kind) (path, source string, cleanup func(), err error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return "", "", nil, fmt.Errorf("push: %w", err)
	}
	pack := func(w io.Writer) error { return bundle.Write(w, arg) }
	switch {
	case !kind.Folder() && fi.IsDir():
		return "", "", nil, fmt.Errorf("push %s: a folder is pushed with --kind %s; %s is one file", arg, folderKinds(), kind.Article())
	case !kind.Folder():
		if err := checkPushed(arg, kind); err != nil {
			return "", "", nil, err
		}
		return arg, "", func() {}, nil
	case kind == catalog.KindRecovery && !fi.IsDir():
		z, err := openRecoveryZip(arg)
		if err != nil {
			return "", "", nil, err
		}
		defer z.Close()
		pack = func(w io.Writer) error { return bundle.WriteZip(w, &z.Reader) }
	case !fi.IsDir():
		return "", "", nil, fmt.Errorf("push %s: --kind %s takes a folder (it is stored as a bundle)", arg, kind)
	default:
		if err := checkPushed(arg, kind); err != nil {
			return "", "", nil, err
		}
	}
	f, err := os.CreateTemp("", "imagefarm-bundle-*.tar")
	if err != nil {
		return "", "", nil, fmt.Errorf("push: %w", err)
	}
	cleanup = func() { os.Remove(f.Name()) }
	err = pack(contextWriter{ctx, f})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", "", nil, fmt.Errorf("push %s: %w", arg, err)
	}
	return f.Name(), filepath.Base(filepath.Clean(arg)), cleanup, nil
}

// openRecoveryZip opens the zip of a recovery drive and checks, from its
// directory alone, that it can become a folder on a key: every entry a
// relative path (bundle.ZipEntries), every file one FAT32 can hold
// (media.CheckKeyFile).
func openRecoveryZip(arg string) (*zip.ReadCloser, error) {
	z, err := zip.OpenReader(arg)
	if err != nil {
		return nil, fmt.Errorf("push %s: --kind recovery takes a folder or a zip of one: %w", arg, err)
	}
	entries, err := bundle.ZipEntries(&z.Reader)
	for _, e := range entries {
		if err == nil && !e.Dir {
			err = media.CheckKeyFile(e.Name, e.Size)
		}
	}
	if err != nil {
		z.Close()
		return nil, fmt.Errorf("push %s: %w", arg, err)
	}
	return z, nil
}

// folderKinds lists the kinds pushed as folders: "winpe, drivers or hook".
func folderKinds() string {
	var names []string
	for _, k := range catalog.Kinds {
		if k.Folder() && k != catalog.KindBootEnv {
			names = append(names, string(k))
		}
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// checkPushed refuses, before anything is uploaded, what media build
// would refuse of a kind: an update package not named .msu or .cab, a
// hook folder whose scripts are not named after their points, a recovery
// drive with a file too large for a key.
func checkPushed(arg string, kind catalog.Kind) error {
	var err error
	switch kind {
	case catalog.KindUpdate:
		_, err = media.UpdateExt(filepath.Base(arg))
	case catalog.KindHook:
		_, err = media.HookScripts(arg)
	case catalog.KindRecovery:
		err = media.CheckRecoveryFolder(arg)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", arg, err)
	}
	return nil
}

// contextWriter fails writes once ctx is done, so that a long copy into w
// stops when the command is interrupted.
type contextWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c contextWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
