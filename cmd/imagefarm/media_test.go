package main

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// mediaInputs pushes a WinPE folder, a two-image WIM, drivers for the
// Latitude 7440 and a provisioning package to store with the CLI.
func mediaInputs(t *testing.T, store string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tree/Windows/System32/kernel.dll", []byte(strings.Repeat("kernel ", 50000)))
	write("tree/Users/readme.txt", []byte("hello"))
	wim := filepath.Join(dir, "install.wim")
	wimlib(t, "capture", filepath.Join(dir, "tree"), wim, "Windows 11 Pro")
	wimlib(t, "append", filepath.Join(dir, "tree"), wim, "Windows 11 Enterprise")
	boot, _ := os.ReadFile(wim)
	write("winpe/EFI/Boot/bootx64.efi", []byte("MZ"))
	write("winpe/sources/boot.wim", boot)
	write("drivers/net/e1d.inf", []byte("[Version]"))
	write("enroll.ppkg", []byte("ppkg"))
	write("windows11.0-kb5044284-x64.msu", []byte("MSCF update"))
	write("hook/after-apply.cmd", []byte("@exit /b 0"))
	for _, args := range [][]string{
		{"winpe:1", filepath.Join(dir, "winpe"), "--kind", "winpe"},
		{"win11:1", wim, "--kind", "wim"},
		{"drivers-7440:1", filepath.Join(dir, "drivers"), "--kind", "drivers", "--model", "Latitude 7440"},
		{"enroll:1", filepath.Join(dir, "enroll.ppkg"), "--kind", "ppkg"},
		{"kb5044284:1", filepath.Join(dir, "windows11.0-kb5044284-x64.msu"), "--kind", "update"},
		{"tag:1", filepath.Join(dir, "hook"), "--kind", "hook"},
	} {
		mustRun(t, append([]string{"--store", store, "image", "push"}, args...)...)
	}
}

func TestMediaBuildPush(t *testing.T) {
	store := "file://" + t.TempDir()
	mediaInputs(t, store)
	build := []string{"--store", store, "media", "build", "--winpe", "winpe:1", "--wim", "win11:1", "--wim-index", "2",
		"--drivers", "drivers-7440:1", "--ppkg", "enroll:1", "--updates", "kb5044284:1", "--hook", "tag:1", "--model", "Latitude 7440", "--json"}
	out := filepath.Join(t.TempDir(), "key.img")
	var res struct {
		Digest         string `json:"digest"`
		ManifestDigest string `json:"manifest_digest"`
	}
	text := mustRun(t, append(build, "--push", "key-7440:1", "--out", out)...)
	if err := json.Unmarshal([]byte(text), &res); err != nil || !strings.HasPrefix(res.ManifestDigest, "sha256:") {
		t.Fatalf("media build --json = %s (%v)", text, err)
	}
	if got := "sha256:" + sha256File(t, out); got != res.Digest {
		t.Errorf("media build says the image is %s, the file is %s", res.Digest, got)
	}
	var img imageJSON
	json.Unmarshal([]byte(mustRun(t, "--store", store, "image", "inspect", "key-7440:1", "--json")), &img)
	if img.Kind != "disk" || len(img.Models) != 1 || img.Models[0] != "Latitude 7440" {
		t.Errorf("the pushed media are %s for %v, want a disk for Latitude 7440", img.Kind, img.Models)
	}
	for _, key := range []string{"media.winpe", "media.wim", "media.drivers.1", "media.ppkg.1", "media.updates.1", "media.hook.1"} {
		if !strings.Contains(img.Labels[key], ":1@sha256:") {
			t.Errorf("label %s = %q, want REF@DIGEST", key, img.Labels[key])
		}
	}
	if img.Labels["media.model"] != "Latitude 7440" || img.Labels["media.wim-index"] != "2" || img.Labels["imagefarm.version"] == "" {
		t.Errorf("labels %v lack the model, index or imagefarm version", img.Labels)
	}
	pulled := filepath.Join(t.TempDir(), "pulled.img")
	mustRun(t, "--store", store, "image", "pull", "key-7440:1", pulled)
	if sha256File(t, pulled) != sha256File(t, out) {
		t.Errorf("the pushed media differ from the file written")
	}
	testenv.ReadFATImage(t, pulled).Fsck(t)

	// The same inputs again: the same image, and pushing it stores nothing new.
	var again struct {
		Digest   string `json:"digest"`
		NewBytes int64  `json:"new_bytes"`
	}
	json.Unmarshal([]byte(mustRun(t, append(build, "--push", "key-7440:2")...)), &again)
	if again.Digest != res.Digest || again.NewBytes != 0 {
		t.Errorf("building again gave %s with %d new bytes, want %s and none", again.Digest, again.NewBytes, res.Digest)
	}
}

func TestMediaBuildRefuses(t *testing.T) {
	store := "file://" + t.TempDir()
	mediaInputs(t, store)
	base := []string{"--store", store, "media", "build", "--winpe", "winpe:1", "--wim", "win11:1", "--push", "key:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--drivers", "drivers-7440:1", "--model", "OptiPlex 7010"}, `media: model mismatch: --drivers drivers-7440:1 is only for "Latitude 7440", not for media for "OptiPlex 7010"`},
		{[]string{"--drivers", "drivers-7440:1"}, `is only for "Latitude 7440", not for media for no model in particular`},
		{[]string{"--wim-index", "0"}, "--wim-index \"0\": want an image index"},
		{[]string{"--split-size", "5GiB"}, "--split-size \"5GiB\": want a size from 1MiB to 4095MiB"},
		{[]string{"--ppkg", "nothere:1"}, "--ppkg nothere:1: catalog: image not found"},
	} {
		if out, err := run(t, append(base, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("media build %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	if out := mustRun(t, "--store", store, "image", "ls", "key"); strings.Contains(out, "key") {
		t.Errorf("refused builds pushed something:\n%s", out)
	}
	// A version that exists is refused before the media are built.
	out := filepath.Join(t.TempDir(), "key.img")
	if _, err := run(t, "--store", store, "media", "build", "--winpe", "winpe:1", "--wim", "win11:1", "--push", "winpe:1", "--out", out); err == nil ||
		!strings.Contains(err.Error(), "winpe:1 is sha256:") || !strings.Contains(err.Error(), "push a new version") {
		t.Errorf("media build --push of an existing version = %v, want refused as taken", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused push built the media anyway: %s: %v", out, err)
	}
	if _, err := run(t, "--store", store, "media", "build", "--winpe", "winpe:1", "--wim", "win11:1"); err == nil || !strings.Contains(err.Error(), "--push NAME:VERSION, --out FILE, or both") {
		t.Errorf("media build without --push or --out = %v", err)
	}
}

func TestMediaBuildSignsAndChecksItsInputs(t *testing.T) {
	store := "file://" + t.TempDir()
	mediaInputs(t, store) // pushed unsigned
	keys := t.TempDir()
	mustRun(t, "key", "init", "--out", keys)
	signKey, trusted := filepath.Join(keys, "signing.key"), filepath.Join(keys, "signing.pub")
	build := []string{"--store", store, "media", "build", "--winpe", "winpe:1", "--wim", "win11:1", "--wim-index", "1",
		"--sign-key", signKey, "--json"}
	if _, err := run(t, append(build, "--trusted-keys", trusted, "--push", "key:1")...); err == nil || !strings.Contains(err.Error(), "input winpe:1") {
		t.Fatalf("media build from unsigned inputs with --trusted-keys = %v, want the unsigned input named", err)
	}
	for _, ref := range []string{"winpe:1", "win11:1"} {
		mustRun(t, "--store", store, "image", "sign", ref, "--sign-key", signKey)
	}
	mustRun(t, append(build, "--trusted-keys", trusted, "--push", "key:2")...)
	c, err := openCatalog(&globals{store: store}, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := catalog.LoadKeyRing(trusted)
	if err != nil {
		t.Fatal(err)
	}
	m, digest, err := c.Manifest(t.Context(), catalog.Ref{Name: "key", Tag: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(t.Context(), m, digest, ring); err != nil {
		t.Errorf("the pushed media is not signed by --sign-key: %v", err)
	}
}

// TestMediaBuildRecovery pushes a manufacturer's recovery drive from a
// zip Info-ZIP made, builds a key of it for its model and pushes the key
// as a disk image for that model, so that a standing order writes it like
// any media; zips that cannot become a key are refused as they are pushed.
func TestMediaBuildRecovery(t *testing.T) {
	store := "file://" + t.TempDir()
	dir := t.TempDir()
	for name, data := range map[string]string{"efi/boot/bootx64.efi": "MZ", "sources/install.swm": "MSWIM", "sources/install2.swm": "MSWIM"} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o644)
	}
	archive := filepath.Join(t.TempDir(), "SurfaceLaptop5_BMR_15_11.0.zip")
	zipCmd := exec.Command(testenv.Tool(t, "zip", "zip"), "-r", "-q", archive, ".")
	zipCmd.Dir = dir
	if out, err := zipCmd.CombinedOutput(); err != nil {
		t.Fatalf("zip: %v\n%s", err, out)
	}
	mustRun(t, "--store", store, "image", "push", "surface-laptop-5-bmr:1", archive, "--kind", "recovery", "--model", "Surface Laptop 5")
	// The same files from the folder are the same bundle: nothing new.
	if out := mustRun(t, "--store", store, "image", "push", "surface-laptop-5-bmr:2", dir, "--kind", "recovery", "--model", "Surface Laptop 5"); !strings.Contains(out, "0 B of it new") {
		t.Errorf("pushing the zip's folder said %q, want 0 B new", out)
	}
	key := filepath.Join(t.TempDir(), "key.img")
	mustRun(t, "--store", store, "media", "build", "--recovery", "surface-laptop-5-bmr:1", "--model", "Surface Laptop 5", "--push", "key-surface:1", "--out", key)
	var img imageJSON
	json.Unmarshal([]byte(mustRun(t, "--store", store, "image", "inspect", "key-surface:1", "--json")), &img)
	if img.Kind != "disk" || len(img.Models) != 1 || img.Models[0] != "Surface Laptop 5" || !strings.HasPrefix(img.Labels["media.recovery"], "surface-laptop-5-bmr:1@sha256:") {
		t.Errorf("the pushed key is a %s for %v labelled %v, want a disk for Surface Laptop 5 from the recovery drive", img.Kind, img.Models, img.Labels)
	}
	if listing := testenv.ReadFATImage(t, key).Dir(t, "/sources"); !strings.Contains(listing, " install2.swm\n") {
		t.Errorf("the key's sources folder:\n%s", listing)
	}

	evil := zipOf(t, func(zw *zip.Writer) {
		w, _ := zw.Create("../../etc/cron.d/x")
		w.Write([]byte("x"))
	})
	// A file of 4 GiB, as its zip's directory says: refused from the
	// directory alone, before a byte of it is read (the bytes are not there).
	big := zipOf(t, func(zw *zip.Writer) {
		w, _ := zw.CreateRaw(&zip.FileHeader{Name: "sources/install.wim", Method: zip.Deflate, CompressedSize64: 4 << 20, UncompressedSize64: 1 << 32})
		w.Write([]byte("not deflate"))
	})
	oddName := zipOf(t, func(zw *zip.Writer) {
		w, _ := zw.Create("sources/con<1>.txt")
		w.Write([]byte("x"))
	})
	notZip := filepath.Join(t.TempDir(), "recovery.iso")
	os.WriteFile(notZip, []byte("CD001"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "push", "r:1", evil, "--kind", "recovery"}, `entry "../../etc/cron.d/x" has a ".." element, which leaves the folder`},
		{[]string{"image", "push", "r:1", big, "--kind", "recovery"}, "sources/install.wim is 4.0 GiB (4294967296 bytes), and FAT32, the only file system of the keys media build writes, holds files under 4 GiB; if it is a WIM the recovery tool also takes split (.swm), split it with wimlib-imagex split install.wim install.swm 4000"},
		{[]string{"image", "push", "r:1", oddName, "--kind", "recovery"}, `sources/con<1>.txt: name "con<1>.txt" has a character FAT32 forbids`},
		{[]string{"image", "push", "r:1", notZip, "--kind", "recovery"}, "--kind recovery takes a folder or a zip of one: zip: not a valid zip file"},
		{[]string{"media", "build", "--recovery", "surface-laptop-5-bmr:1", "--model", "Surface Laptop 6", "--push", "r:1"}, `--recovery surface-laptop-5-bmr:1 is only for "Surface Laptop 5", not for media for "Surface Laptop 6"`},
		{[]string{"media", "build", "--recovery", "surface-laptop-5-bmr:1", "--winpe", "key-surface:1", "--model", "Surface Laptop 5", "--push", "r:1"}, "it takes no --winpe, --wim"},
		{[]string{"media", "build", "--recovery", "surface-laptop-5-bmr:1", "--wim-index", "2", "--model", "Surface Laptop 5", "--push", "r:1"}, "it takes no --winpe, --wim, --wim-index"},
		{[]string{"media", "build", "--recovery", "surface-laptop-5-bmr:1", "--split-size", "1GiB", "--model", "Surface Laptop 5", "--push", "r:1"}, "--split-size: --recovery lays the recovery drive onto the key as it is and splits nothing"},
	} {
		if out, err := run(t, append([]string{"--store", store}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	if out, err := run(t, "--store", store, "image", "inspect", "r:1"); err == nil {
		t.Errorf("a refused push or build left r:1:\n%s", out)
	}
}

// zipOf writes a zip with fill and returns its path.
func zipOf(t *testing.T, fill func(*zip.Writer)) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recovery.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	fill(zw)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}
