package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// pushSource returns the file to push for arg: arg itself, or for a kind
// that is a folder (winpe, drivers) the folder packed as a bundle in a
// temporary file, which cleanup removes. source is what the manifest
// records as the pushed file's name. Packing stops when ctx is done.
func pushSource(ctx context.Context, arg string, kind catalog.Kind) (path, source string, cleanup func(), err error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return "", "", nil, fmt.Errorf("push: %w", err)
	}
	switch {
	case !kind.Folder() && fi.IsDir():
		return "", "", nil, fmt.Errorf("push %s: a folder is pushed with --kind winpe or --kind drivers; a %s is one file", arg, kind)
	case !kind.Folder():
		return arg, "", func() {}, nil
	case !fi.IsDir():
		return "", "", nil, fmt.Errorf("push %s: --kind %s takes a folder (it is stored as a bundle)", arg, kind)
	}
	f, err := os.CreateTemp("", "imagefarm-bundle-*.tar")
	if err != nil {
		return "", "", nil, fmt.Errorf("push: %w", err)
	}
	cleanup = func() { os.Remove(f.Name()) }
	err = bundle.Write(contextWriter{ctx, f}, arg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", "", nil, err
	}
	return f.Name(), filepath.Base(filepath.Clean(arg)), cleanup, nil
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
