package deployenv_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/internal/pki"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestBuildIsDeterministic: two builds from the same kernel, modules,
// init program, farm CA and trusted keys give the same bytes, although the
// second one's init program is a copy with another path, mtime and owner,
// its key files come in the other order, and the builds run at different
// times into different folders (and Go's map order differs from run to
// run). The initramfs holds the CA and every key once.
func TestBuildIsDeterministic(t *testing.T) {
	ca, keys := trustFixtures(t)
	k := testenv.DebianKernel(t)
	init1 := testenv.StaticProgram(t)
	init2 := filepath.Join(t.TempDir(), "other-name")
	data, err := os.ReadFile(init1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(init2, data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(init2, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(init2, 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	out1, out2 := filepath.Join(t.TempDir(), "env"), filepath.Join(t.TempDir(), "env")
	info1, err := deployenv.Build(t.Context(), deployenv.BuildConfig{Kernel: k, Init: init1, Out: out1, CA: ca, TrustedKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a second later: a leaked build time would differ
	if _, err := deployenv.Build(t.Context(), deployenv.BuildConfig{Kernel: k, Init: init2, Out: out2, CA: ca,
		TrustedKeys: []string{keys[1], keys[0]}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{deployenv.KernelFile, deployenv.InitrdFile, deployenv.InfoFile} {
		a, b := readFile(t, filepath.Join(out1, name)), readFile(t, filepath.Join(out2, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same inputs (%d and %d bytes)", name, len(a), len(b))
		}
	}
	recs := checkInitramfs(t, out1, info1, data)
	if got := content(t, recs[deployenv.CAFile]); !bytes.Equal(got, readFile(t, ca)) {
		t.Errorf("%s holds %d bytes, want the farm CA's %d", deployenv.CAFile, len(got), len(readFile(t, ca)))
	}
	ring, err := catalog.ParsePublicKeys(content(t, recs[deployenv.TrustedKeysFile]))
	if err != nil || len(ring) != 2 || len(info1.Trust.KeyIDs) != 2 || info1.Trust.CASHA256 == "" {
		t.Errorf("%s: %d keys (%v), env.json's trust %+v; want the two keys once each, and the CA's hash",
			deployenv.TrustedKeysFile, len(ring), err, info1.Trust)
	}
}

// trustFixtures writes a farm CA and two files of signing keys, the
// second holding the first's key again and one more.
func trustFixtures(t *testing.T) (ca string, keys []string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.InitCA(dir); err != nil {
		t.Fatal(err)
	}
	var pub []string
	for i := range 2 {
		k, err := catalog.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		pub = append(pub, k.Public(fmt.Sprintf("key%d", i)).String())
	}
	for i, text := range []string{pub[0] + "\n", pub[1] + "\n" + pub[0] + "\n"} {
		keys = append(keys, filepath.Join(dir, fmt.Sprintf("signing%d.pub", i)))
		if err := os.WriteFile(keys[i], []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, pki.CACertFile), keys
}

// checkInitramfs opens the initramfs the way the kernel does and checks
// what it holds: /init with its bytes, a console, every module of the
// environment with its modules.dep and load order, folders before their
// contents, and no time, owner or device number of the build machine.
func checkInitramfs(t *testing.T, dir string, info *deployenv.Info, initData []byte) map[string]cpio.Record {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(readFile(t, filepath.Join(dir, deployenv.InitrdFile))))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatalf("initrd is not one zstd stream: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw.Bytes())))
	if err != nil {
		t.Fatalf("initrd is not a newc cpio archive: %v", err)
	}
	seen := map[string]cpio.Record{}
	for _, r := range recs {
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 || r.Major != 0 || r.Minor != 0 {
			t.Errorf("%s: mtime %d, uid %d, gid %d, dev %d:%d; want all 0", r.Name, r.MTime, r.UID, r.GID, r.Major, r.Minor)
		}
		if parent := path.Dir(r.Name); parent != "." && seen[parent].Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("%s comes before its folder %s", r.Name, parent)
		}
		seen[r.Name] = r
	}
	if r := seen["init"]; r.Mode != cpio.S_IFREG|0o755 || !bytes.Equal(content(t, r), initData) {
		t.Errorf("init: mode %o, %d bytes; want 0100755 and the init program's %d bytes", r.Mode, r.FileSize, len(initData))
	}
	if r := seen["dev/console"]; r.Mode != cpio.S_IFCHR|0o600 || r.Rmajor != 5 || r.Rminor != 1 {
		t.Errorf("dev/console: mode %o, device %d:%d; want a character device 5:1", r.Mode, r.Rmajor, r.Rminor)
	}
	modDir := "lib/modules/" + info.KernelRelease
	order := strings.Fields(string(content(t, seen[modDir+"/"+deployenv.LoadOrderFile])))
	if !slices.Equal(order, info.Modules) || len(order) < len(deployenv.DefaultModules) {
		t.Errorf("load order %v, want env.json's %v (at least the %d defaults)", order, info.Modules, len(deployenv.DefaultModules))
	}
	dep := string(content(t, seen[modDir+"/modules.dep"]))
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		file, _, _ := strings.Cut(line, ":")
		if r, ok := seen[modDir+"/"+file]; !ok || r.FileSize == 0 || !strings.HasSuffix(file, ".ko") {
			t.Errorf("modules.dep names %s, which the initramfs does not hold uncompressed", file)
		}
	}
	if n := strings.Count(dep, "\n"); n != len(info.Modules) {
		t.Errorf("modules.dep has %d modules, env.json %d", n, len(info.Modules))
	}
	return seen
}

func content(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	if r.ReaderAt == nil {
		return nil
	}
	b := make([]byte, r.FileSize)
	if _, err := r.ReadAt(b, 0); err != nil && r.FileSize > 0 {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return b
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildRefuses: an init program the environment cannot run, a
// module the kernel does not have, a file that is no kernel and an
// output that exists are refused, naming what was wrong and what to do,
// with nothing written.
func TestBuildRefuses(t *testing.T) {
	k := testenv.DebianKernel(t)
	init := testenv.StaticProgram(t)
	dynamic, err := exec.LookPath("ls") // Debian's ls is dynamically linked
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "init.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	exists := t.TempDir()
	ca, keys := trustFixtures(t)
	leaf := filepath.Join(t.TempDir(), "leaf.crt")
	caObj, _ := pki.LoadCA(filepath.Dir(ca))
	leafPEM, _, err := caObj.Issue(pki.Request{Kind: pki.KindClient, Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leaf, leafPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  deployenv.BuildConfig
		is   error
		want string
	}{
		{"dynamic init", deployenv.BuildConfig{Init: dynamic}, deployenv.ErrNotStatic, "is dynamically linked: the deploy environment has no libraries; build imagefarm with CGO_ENABLED=0"},
		{"script init", deployenv.BuildConfig{Init: script}, deployenv.ErrNotStatic, "is not an ELF executable"},
		{"missing init", deployenv.BuildConfig{Init: filepath.Join(exists, "nope")}, os.ErrNotExist, "nope"},
		{"unknown module", deployenv.BuildConfig{Init: init, Modules: []string{"e1000e", "wifi7000"}}, nil, "no module wifi7000, and it is not built in: check its name"},
		{"output exists", deployenv.BuildConfig{Init: init, Out: exists}, os.ErrExist, "already exists"},
		{"CA not PEM", deployenv.BuildConfig{Init: init, CA: keys[0]}, deployenv.ErrBadTrust, "give the farm's ca.crt"},
		{"CA a leaf", deployenv.BuildConfig{Init: init, CA: leaf}, deployenv.ErrBadTrust, "is not a CA"},
		{"CA missing", deployenv.BuildConfig{Init: init, CA: filepath.Join(exists, "nope.crt")}, os.ErrNotExist, "farm CA"},
		{"keys not keys", deployenv.BuildConfig{Init: init, TrustedKeys: []string{keys[0], ca}}, deployenv.ErrBadTrust, "give the farm's signing.pub"},
		{"keys empty", deployenv.BuildConfig{Init: init, TrustedKeys: []string{script}}, deployenv.ErrBadTrust, "signing.pub"},
	} {
		if tc.cfg.Out == "" {
			tc.cfg.Out = filepath.Join(t.TempDir(), "env")
		}
		tc.cfg.Kernel = k
		_, err := deployenv.Build(t.Context(), tc.cfg)
		if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Build = %v, want %v saying %q", tc.name, err, tc.is, tc.want)
		}
		if tc.cfg.Out != exists {
			if _, err := os.Stat(tc.cfg.Out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %s exists after a refused build", tc.name, tc.cfg.Out)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(tc.cfg.Out), ".*build-*")); len(left) > 0 {
			t.Errorf("%s: temporary folders left: %v", tc.name, left)
		}
	}
	if _, err := deployenv.FindKernel(init, ""); !errors.Is(err, deployenv.ErrNotKernel) {
		t.Errorf("FindKernel(a Go program) = %v, want ErrNotKernel", err)
	}
	if _, err := deployenv.FindKernel(k.Image, exists); err == nil || !strings.Contains(err.Error(), "pass --modules-dir") {
		t.Errorf("FindKernel(kernel, a folder without modules.dep) = %v, want an error saying --modules-dir", err)
	}
}
