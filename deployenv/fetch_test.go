package deployenv_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// pushEnv pushes the environment folder dir to c as name:version, signed
// with key when not nil, the way netboot build-env --push does.
func pushEnv(t *testing.T, c *catalog.Catalog, dir, name, version string, kind catalog.Kind, key *catalog.SigningKey) {
	t.Helper()
	tarball := filepath.Join(t.TempDir(), "env.tar")
	f, err := os.Create(tarball)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(f, dir); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := c.PushFile(t.Context(), tarball, catalog.PushOptions{Name: name, Version: version, Kind: kind, SignKey: key}); err != nil {
		t.Fatal(err)
	}
}

// TestFetchVerifies: a pushed environment fetched for the boot service
// has the built files; a copy damaged on the node's disk is fetched
// again; a good copy is used again without reading a chunk; a damaged
// copy whose chunks are gone is removed, never served; and an unsigned
// environment or an image of another kind is refused.
func TestFetchVerifies(t *testing.T) {
	k := testenv.DebianKernel(t)
	built := filepath.Join(t.TempDir(), "env")
	if _, err := deployenv.Build(t.Context(), deployenv.BuildConfig{Kernel: k, Init: testenv.StaticProgram(t), Modules: []string{"virtio_blk"}, Out: built}); err != nil {
		t.Fatal(err)
	}
	storeDir := t.TempDir()
	store, err := storage.NewFileStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(store, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ring := catalog.NewKeyRing(key.Public("depot"))
	pushEnv(t, c, built, "deploy", "1", catalog.KindBootEnv, key)
	cfg := deployenv.FetchConfig{Catalog: c, Ref: catalog.Ref{Name: "deploy", Tag: "1"}, TrustedKeys: ring, Dir: t.TempDir()}

	env := fetch(t, cfg)
	sameFiles(t, env.Dir, built)
	if env.Kernel() != filepath.Join(env.Dir, "vmlinuz") || env.Info.KernelRelease != k.Release || !strings.HasPrefix(env.Digest, "sha256:") {
		t.Errorf("Fetch = %+v, want the env's kernel, release %s and digest", env, k.Release)
	}

	damage(t, env.Initrd())
	sameFiles(t, fetch(t, cfg).Dir, built) // repaired

	chunks, _ := filepath.Glob(filepath.Join(storeDir, "chunks", "*", "*"))
	for _, ch := range chunks {
		os.Remove(ch)
	}
	if len(chunks) == 0 {
		t.Fatal("the store holds no chunks")
	}
	sameFiles(t, fetch(t, cfg).Dir, built) // used again: no chunk needed

	damage(t, env.Initrd())
	if _, err := deployenv.Fetch(t.Context(), cfg); err == nil {
		t.Fatal("Fetch with a damaged copy and no chunks in the store = nil error")
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the damaged copy %s is still there (%v)", env.Dir, err)
	}

	pushEnv(t, c, built, "deploy", "unsigned", catalog.KindBootEnv, nil)
	cfg.Ref.Tag = "unsigned"
	if _, err := deployenv.Fetch(t.Context(), cfg); !errors.Is(err, catalog.ErrSignatureMissing) {
		t.Errorf("Fetch(unsigned) = %v, want ErrSignatureMissing", err)
	}
	pushEnv(t, c, built, "disk", "1", catalog.KindDisk, key)
	cfg.Ref = catalog.Ref{Name: "disk", Tag: "1"}
	if _, err := deployenv.Fetch(t.Context(), cfg); !errors.Is(err, deployenv.ErrNotBootEnv) || !strings.Contains(err.Error(), "it is a disk; build one with imagefarm netboot build-env --push") {
		t.Errorf("Fetch(a disk image) = %v, want ErrNotBootEnv", err)
	}
}

func fetch(t *testing.T, cfg deployenv.FetchConfig) *deployenv.Env {
	t.Helper()
	env, err := deployenv.Fetch(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Fetch(%s) = %v", cfg.Ref, err)
	}
	return env
}

// damage flips one byte in the middle of the file.
func damage(t *testing.T, p string) {
	t.Helper()
	b := readFile(t, p)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sameFiles(t *testing.T, got, want string) {
	t.Helper()
	for _, name := range []string{deployenv.KernelFile, deployenv.InitrdFile, deployenv.InfoFile} {
		if !bytes.Equal(readFile(t, filepath.Join(got, name)), readFile(t, filepath.Join(want, name))) {
			t.Errorf("%s differs between %s and %s", name, got, want)
		}
	}
}
