package deployenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// ErrNotBootEnv is a ref that names an image of another kind.
var ErrNotBootEnv = errors.New("deployenv: image is not a deploy environment")

// FetchConfig says which deploy environment to fetch and where to keep it.
type FetchConfig struct {
	// Catalog is where it comes from; with a node cache, its chunks are
	// fetched once.
	Catalog *catalog.Catalog
	// Ref names it: NAME:VERSION, NAME:CHANNEL or NAME@DIGEST.
	Ref catalog.Ref
	// TrustedKeys are the keys it must be signed by, checked before a
	// chunk is fetched. Nil only with AllowUnsigned.
	TrustedKeys *catalog.KeyRing
	// AllowUnsigned fetches it without checking its signature when
	// TrustedKeys is nil.
	AllowUnsigned bool
	// Dir holds fetched environments, one folder per manifest digest.
	Dir string
}

// Env is a deploy environment on local disk whose files have been
// checked against the catalog's manifest.
type Env struct {
	Ref    catalog.Ref
	Digest string // the manifest's digest: what the environment is, for ever
	Dir    string // its folder: Dir/<hex of Digest>
	Info   *Info
}

// Kernel returns the path of its kernel.
func (e *Env) Kernel() string { return filepath.Join(e.Dir, KernelFile) }

// Initrd returns the path of its initramfs.
func (e *Env) Initrd() string { return filepath.Join(e.Dir, InitrdFile) }

// Fetch returns the deploy environment cfg.Ref names, in a folder of
// cfg.Dir, verified: its signature checked against cfg.TrustedKeys, and
// every byte against the manifest, whether it was just pulled or was
// already in cfg.Dir from an earlier fetch (a damaged copy is fetched
// again). Concurrent fetches of the same environment share its folder.
func Fetch(ctx context.Context, cfg FetchConfig) (*Env, error) {
	b, err := FetchBundle(ctx, cfg, catalog.KindBootEnv)
	var wrong *WrongKindError
	if errors.As(err, &wrong) {
		return nil, fmt.Errorf("fetch deploy environment %s: it is a %s; build one with imagefarm netboot build-env --push: %w", cfg.Ref, wrong.Got, ErrNotBootEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch deploy environment: %w", err)
	}
	env := &Env{Ref: cfg.Ref, Digest: b.Digest, Dir: b.Dir}
	if env.Info, err = ReadInfo(env.Dir); err != nil {
		return nil, fmt.Errorf("fetch deploy environment %s: %w", cfg.Ref, err)
	}
	return env, nil
}

// WrongKindError is a ref FetchBundle is given that names an image of
// another kind than it was asked for.
type WrongKindError struct {
	Ref       catalog.Ref
	Got, Want catalog.Kind
}

func (e *WrongKindError) Error() string {
	return fmt.Sprintf("%s is a %s image, want a %s", e.Ref, e.Got, e.Want)
}

// Bundle is a bundle the boot service serves from its cache, unpacked and
// checked against the catalog's manifest.
type Bundle struct {
	Digest string // the manifest's digest
	Dir    string // its folder: cfg.Dir/<hex of Digest>
}

// FetchBundle is Fetch for any bundle of kind (a WinPE's files too): the
// bundle cfg.Ref names, unpacked in a folder of cfg.Dir, its signature
// checked against cfg.TrustedKeys and every byte against the manifest,
// whether just pulled or already there (a damaged copy is fetched again).
func FetchBundle(ctx context.Context, cfg FetchConfig, kind catalog.Kind) (*Bundle, error) {
	if cfg.TrustedKeys == nil && !cfg.AllowUnsigned {
		return nil, errors.New("no trusted keys to verify it against, and unsigned images not allowed")
	}
	m, digest, err := cfg.Catalog.Manifest(ctx, cfg.Ref)
	if err != nil {
		return nil, err
	}
	if m.Kind != kind {
		return nil, &WrongKindError{Ref: cfg.Ref, Got: m.Kind, Want: kind}
	}
	if cfg.TrustedKeys != nil {
		if _, err := cfg.Catalog.Verify(ctx, m, digest, cfg.TrustedKeys); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Ref, err)
		}
	}
	b := &Bundle{Digest: digest, Dir: filepath.Join(cfg.Dir, strings.TrimPrefix(digest, "sha256:"))}
	if err = reuse(b.Dir, m); err == nil {
		return b, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		// A damaged or partial copy: fetch it again.
		if err := os.RemoveAll(b.Dir); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Ref, err)
		}
	}
	err = bundle.Extract(b.Dir, func(w io.Writer) error { return cfg.Catalog.Pull(ctx, m, w, nil) })
	if errors.Is(err, fs.ErrExist) || err != nil && dirExists(b.Dir) {
		err = nil // another fetch of the same bundle finished first
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Ref, err)
	}
	if err := reuse(b.Dir, m); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Ref, err)
	}
	return b, nil
}

// reuse checks the folder dir against m, by packing it again as a bundle
// (whose bytes depend only on the files) and checking those bytes chunk
// by chunk. A folder that is not there is fs.ErrNotExist.
func reuse(dir string, m *catalog.Manifest) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	packed := make(chan struct{})
	go func() {
		defer close(packed)
		pw.CloseWithError(bundle.Write(pw, dir))
	}()
	err := m.CheckBytes(pr)
	pr.CloseWithError(errors.New("checked")) // stops a packing that is not done
	<-packed
	if err != nil {
		return fmt.Errorf("%s differs from the catalog's: %w", dir, err)
	}
	return nil
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}
