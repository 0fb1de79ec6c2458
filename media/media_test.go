package media_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/media/fatdisk"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

const model = "Latitude 7440"

func wimlib(t *testing.T, args ...string) string {
	t.Helper()
	return testenv.Run(t, "wimtools", "wimlib-imagex", args...)
}

// writeFiles writes files (slash paths to contents) under dir.
func writeFiles(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func random(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// captureWIM makes a WIM with wimlib of one image per seed, each a tree
// with files of incompressible bytes.
func captureWIM(t *testing.T, fileKiB int, seeds ...uint64) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "install.wim")
	for i, seed := range seeds {
		tree := writeFiles(t, filepath.Join(dir, "tree", string(rune('a'+i))), map[string][]byte{
			"Windows/System32/a.dll": random(seed, fileKiB<<10),
			"Windows/System32/b.dll": random(seed+100, fileKiB<<10),
			"Windows/explorer.exe":   random(seed+200, fileKiB<<10),
			"Users/Default/ntuser":   []byte("hello"),
		})
		cmd := "append"
		if i == 0 {
			cmd = "capture"
		}
		wimlib(t, cmd, tree, path, "Windows image "+string(rune('A'+i)), "--compress=none")
	}
	return path
}

// fixture is a catalog holding a key's inputs.
type fixture struct {
	c                        *catalog.Catalog
	winpe, wim, bigWIM       catalog.Ref
	drivers, otherDrivers    catalog.Ref
	ppkg, noBoot, wimForOpti catalog.Ref
	files                    map[string]string // what each input was made from
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(s, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{c: c, files: map[string]string{}}
	bootWIM := captureWIM(t, 20, 9)
	bootData, _ := os.ReadFile(bootWIM)
	winpe := writeFiles(t, t.TempDir(), map[string][]byte{
		"EFI/Boot/bootx64.efi":   random(1, 1500),
		"EFI/Microsoft/Boot/BCD": random(2, 16384),
		"sources/boot.wim":       bootData,
		"bootmgr.efi":            random(3, 2000),
		"en-us/bootmgr.efi.mui":  random(4, 300),
	})
	f.files["winpe"] = winpe
	f.winpe = f.pushFolder(t, "winpe:1", winpe, catalog.KindWinPE)
	noBoot := writeFiles(t, t.TempDir(), map[string][]byte{"sources/boot.wim": bootData})
	f.noBoot = f.pushFolder(t, "winpe-broken:1", noBoot, catalog.KindWinPE)

	f.files["wim"] = captureWIM(t, 300, 1, 2)
	f.wim = f.push(t, "universal:2026.11", f.files["wim"], catalog.KindWIM)
	f.files["bigWIM"] = captureWIM(t, 700, 3, 4) // over 4 MiB: split at 1 MiB
	f.bigWIM = f.push(t, "recovery-7440:1", f.files["bigWIM"], catalog.KindWIM, model)
	f.wimForOpti = f.push(t, "recovery-7010:1", f.files["wim"], catalog.KindWIM, "OptiPlex 7010")

	f.files["drivers"] = writeFiles(t, t.TempDir(), map[string][]byte{
		"Audio/RTKVHD64.inf": []byte("[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n"),
		"Audio/RTKVHD64.sys": random(5, 200<<10),
		"Net/e1d.inf":        []byte("[Version]"),
	})
	f.drivers = f.pushFolder(t, "drivers-7440:1", f.files["drivers"], catalog.KindDrivers, model, "Latitude 7450")
	f.otherDrivers = f.pushFolder(t, "drivers-7010:1", f.files["drivers"], catalog.KindDrivers, "OptiPlex 7010")

	ppkg := filepath.Join(t.TempDir(), "enroll.ppkg")
	os.WriteFile(ppkg, random(6, 5000), 0o644)
	f.files["ppkg"] = ppkg
	f.ppkg = f.push(t, "enroll:1", ppkg, catalog.KindPPKG)
	return f
}

func (f *fixture) push(t *testing.T, ref, path string, kind catalog.Kind, models ...string) catalog.Ref {
	t.Helper()
	r, err := catalog.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.PushFile(t.Context(), path, catalog.PushOptions{Name: r.Name, Version: r.Tag, Kind: kind, Models: models}); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return r
}

func (f *fixture) pushFolder(t *testing.T, ref, dir string, kind catalog.Kind, models ...string) catalog.Ref {
	t.Helper()
	tarFile := filepath.Join(t.TempDir(), "bundle.tar")
	out, err := os.Create(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(out, dir); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return f.push(t, ref, tarFile, kind, models...)
}

func (f *fixture) build(t *testing.T, spec media.Spec) (*media.Result, string, error) {
	t.Helper()
	spec.Out = filepath.Join(t.TempDir(), "key.img")
	res, err := media.Build(t.Context(), f.c, spec)
	return res, spec.Out, err
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, gerr := os.ReadFile(got)
	w, werr := os.ReadFile(want)
	if gerr != nil || werr != nil || !bytes.Equal(g, w) {
		t.Errorf("%s (%d bytes, %v) differs from %s (%d bytes, %v)", got, len(g), gerr, want, len(w), werr)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestBuildKey builds a key for a model from a WinPE bundle, a universal
// WIM with all its images, drivers and a provisioning package, then reads
// it back with sfdisk, fsck.vfat, mtools and wimlib.
func TestBuildKey(t *testing.T) {
	f := newFixture(t)
	res, img, err := f.build(t, media.Spec{WinPE: f.winpe, WIM: f.wim, Drivers: []catalog.Ref{f.drivers}, PPKGs: []catalog.Ref{f.ppkg}, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	if got := fileSHA256(t, img); res.Digest != got || res.WIMParts != 1 {
		t.Errorf("Build = digest %s, %d WIM parts; the image has %s, want one part", res.Digest, res.WIMParts, got)
	}
	im := testenv.ReadFATImage(t, img)
	if im.Type != "c" || !im.Bootable || im.Offset != 1<<20 {
		t.Errorf("sfdisk -J reads %+v, want one bootable FAT32 LBA (c) partition at 1 MiB", im)
	}
	im.Fsck(t)
	out := im.CopyOut(t)
	for key, local := range map[string]string{
		"EFI/Boot/bootx64.efi": filepath.Join(f.files["winpe"], "EFI/Boot/bootx64.efi"),
		"sources/boot.wim":     filepath.Join(f.files["winpe"], "sources/boot.wim"),
		"bootmgr.efi":          filepath.Join(f.files["winpe"], "bootmgr.efi"),
		"images/install.wim":   f.files["wim"],
		"drivers/Latitude 7440/drivers-7440/Audio/RTKVHD64.sys": filepath.Join(f.files["drivers"], "Audio/RTKVHD64.sys"),
		"ppkg/enroll.ppkg": f.files["ppkg"],
	} {
		sameFile(t, filepath.Join(out, filepath.FromSlash(key)), local)
	}
	wimlib(t, "verify", filepath.Join(out, "images/install.wim"))
	if info := wimlib(t, "info", filepath.Join(out, "images/install.wim")); !strings.Contains(info, "Image Count:    2") {
		t.Errorf("wimlib-imagex info of the key's WIM:\n%s\nwant both images", info)
	}
	deploy := readScript(t, filepath.Join(out, "deploy.cmd"))
	for _, want := range []string{
		`(echo select disk %DISK%& type "%MEDIA%CreatePartitions-UEFI.txt") > "%WORK%\partitions.txt"`,
		`diskpart /s "%WORK%\partitions.txt"`,
		`dism /Apply-Image /ImageFile:"%MEDIA%images\install.wim" /Index:%INDEX% /ApplyDir:W:\`,
		`set "INDEX=1"`, `rem     image 2: Windows image B`,
		`dism /Image:W:\ /Add-Driver /Driver:"%MEDIA%drivers\Latitude 7440" /Recurse`,
		`dism /Image:W:\ /Add-ProvisioningPackage /PackagePath:"%MEDIA%ppkg\enroll.ppkg"`,
		`W:\Windows\System32\bcdboot W:\Windows /s S: /f UEFI`,
		"rem drivers: drivers-7440:1@" + res.Inputs[2].Digest,
	} {
		if !strings.Contains(deploy, want) {
			t.Errorf("deploy.cmd lacks %q:\n%s", want, deploy)
		}
	}
	parts := readScript(t, filepath.Join(out, "CreatePartitions-UEFI.txt"))
	for _, want := range []string{"convert gpt", "create partition efi size=260", "format quick fs=fat32", "create partition msr size=16",
		`format quick fs=ntfs label="Windows"`, `set id="de94bba4-06d1-4d40-a16a-bfd50179d6ac"`, "gpt attributes=0x8000000000000001"} {
		if !strings.Contains(parts, want) {
			t.Errorf("CreatePartitions-UEFI.txt lacks %q:\n%s", want, parts)
		}
	}
	if res.Size > 40<<20 {
		t.Errorf("a key image of a few MiB of content is %d bytes, want the smallest FAT32 (about 36 MiB)", res.Size)
	}
	labels := res.Labels("v-test")
	if labels["media.drivers.1"] != "drivers-7440:1@"+res.Inputs[2].Digest || labels["media.model"] != model || labels["imagefarm.version"] != "v-test" || labels["media.wim-index"] != "all" {
		t.Errorf("Labels = %v", labels)
	}
}

// readScript reads a script copied off the key and checks its CRLF line
// ends; it returns the text with LF line ends.
func readScript(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n")) {
		t.Errorf("%s has bare LF line ends; cmd.exe and diskpart want CRLF", filepath.Base(path))
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// TestBuildSplitsLargeWIM exports one image of a model's WIM and splits
// it at 1 MiB; the parts must verify with wimlib as one WIM.
func TestBuildSplitsLargeWIM(t *testing.T) {
	f := newFixture(t)
	res, img, err := f.build(t, media.Spec{WinPE: f.winpe, WIM: f.bigWIM, WIMIndex: 2, Model: model, SplitSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	im := testenv.ReadFATImage(t, img)
	im.Fsck(t)
	out := im.CopyOut(t)
	parts, _ := filepath.Glob(filepath.Join(out, "images", "*"))
	if res.WIMParts < 2 || len(parts) != res.WIMParts {
		t.Fatalf("Build made %d parts, the key holds %v", res.WIMParts, parts)
	}
	first := filepath.Join(out, "images", "install.swm")
	info := wimlib(t, "info", first)
	for _, want := range []string{"Part Number:    1/" + strconv.Itoa(res.WIMParts), "Image Count:    1", "Name:                   Windows image B"} {
		if !strings.Contains(info, want) {
			t.Errorf("wimlib-imagex info install.swm lacks %q:\n%s", want, info)
		}
	}
	wimlib(t, "verify", first, "--ref="+filepath.Join(out, "images", "install*.swm"))
	guids := map[string]bool{}
	for _, p := range parts {
		guids[regexp.MustCompile(`GUID\s+=\s+(\S+)`).FindStringSubmatch(wimlib(t, "info", p, "--header"))[1]] = true
	}
	if len(guids) != 1 {
		t.Errorf("the parts have GUIDs %v, want one", guids)
	}
	deploy := readScript(t, filepath.Join(out, "deploy.cmd"))
	if want := `dism /Apply-Image /ImageFile:"%MEDIA%images\install.swm" /SWMFile:"%MEDIA%images\install*.swm" /Index:%INDEX% /ApplyDir:W:\`; !strings.Contains(deploy, want) {
		t.Errorf("deploy.cmd lacks %q:\n%s", want, deploy)
	}
	if !strings.Contains(deploy, "rem     image 1: Windows image B (image 2 of recovery-7440:1)") {
		t.Errorf("deploy.cmd does not say which image it holds:\n%s", deploy)
	}
}

// TestBuildIsDeterministic builds the same key twice, through the export
// and split that draw random GUIDs, and wants the same bytes.
func TestBuildIsDeterministic(t *testing.T) {
	f := newFixture(t)
	spec := media.Spec{WinPE: f.winpe, WIM: f.bigWIM, WIMIndex: 1, Drivers: []catalog.Ref{f.drivers}, Model: model, SplitSize: 1 << 20}
	first, img1, err := f.build(t, spec)
	if err != nil {
		t.Fatal(err)
	}
	second, img2, err := f.build(t, spec)
	if err != nil {
		t.Fatal(err)
	}
	if first.Digest != second.Digest || fileSHA256(t, img1) != fileSHA256(t, img2) {
		t.Errorf("two builds of the same inputs: digests %s and %s", first.Digest, second.Digest)
	}
	spec.WIMIndex = 2
	if third, _, err := f.build(t, spec); err != nil || third.Digest == first.Digest {
		t.Errorf("a build of another image index = %v, %v; want another digest", third, err)
	}
}

// TestBuildRefuses covers what Build refuses before writing anything.
func TestBuildRefuses(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		spec media.Spec
		err  error
		want []string
	}{
		{"drivers for another model", media.Spec{WinPE: f.winpe, WIM: f.wim, Drivers: []catalog.Ref{f.otherDrivers}, Model: model},
			media.ErrModelMismatch, []string{`drivers-7010:1 is only for "OptiPlex 7010"`, `not for media for "Latitude 7440"`}},
		{"factory WIM for another model", media.Spec{WinPE: f.winpe, WIM: f.wimForOpti, Model: model},
			media.ErrModelMismatch, []string{`--wim recovery-7010:1 is only for "OptiPlex 7010"`, `"Latitude 7440"`}},
		{"model-tagged drivers on media for no model", media.Spec{WinPE: f.winpe, WIM: f.wim, Drivers: []catalog.Ref{f.drivers}},
			media.ErrModelMismatch, []string{`"Latitude 7440", "Latitude 7450"`, "no model in particular"}},
		{"WinPE without bootx64.efi", media.Spec{WinPE: f.noBoot, WIM: f.wim},
			media.ErrNotBootable, []string{"--winpe winpe-broken:1", "no EFI/Boot/bootx64.efi"}},
		{"a WIM as WinPE", media.Spec{WinPE: f.wim, WIM: f.wim},
			media.ErrWrongKind, []string{"--winpe universal:2026.11 is a wim image, want winpe"}},
		{"an index the WIM lacks", media.Spec{WinPE: f.winpe, WIM: f.wim, WIMIndex: 3},
			nil, []string{"universal:2026.11 has 2 images; index 3"}},
		{"a split size over 4 GiB", media.Spec{WinPE: f.winpe, WIM: f.wim, SplitSize: 4 << 30},
			nil, []string{"so each part fits a FAT32 file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			tc.spec.WorkDir = work
			_, img, err := f.build(t, tc.spec)
			if err == nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("Build = %v, want %v", err, tc.err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Build = %q, want it to say %q", err, want)
				}
			}
			if _, serr := os.Stat(img); serr == nil {
				t.Errorf("a refused build left %s", img)
			}
			if tc.err == media.ErrModelMismatch {
				if left, _ := os.ReadDir(work); len(left) != 0 {
					t.Errorf("a model mismatch downloaded %v before refusing", left)
				}
			}
		})
	}
}

// custom holds the update packages and hooks of a key, pushed to f's
// catalog.
type custom struct {
	kb1, kb2, kbOther, notMSU  catalog.Ref
	checks, badPoint, noScript catalog.Ref
	files                      map[string]string
}

func (f *fixture) pushCustom(t *testing.T) *custom {
	t.Helper()
	c := &custom{files: map[string]string{}}
	update := func(ref, name string, seed uint64, models ...string) catalog.Ref {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, random(seed, 3000+int(seed)), 0o644)
		c.files[ref] = p
		return f.push(t, ref, p, catalog.KindUpdate, models...)
	}
	c.kb1 = update("kb5043080:1", "windows11.0-kb5043080-x64.msu", 11)
	c.kb2 = update("kb5044284:1", "Windows11.0-KB5044284-x64.CAB", 12, model)
	c.kbOther = update("kb-opti:1", "windows11.0-kb1-x64.msu", 13, "OptiPlex 7010")
	c.notMSU = update("kb-exe:1", "setup.exe", 14)
	scripts := map[string][]byte{"tools/check.ps1": []byte("exit 0\r\n")}
	for _, p := range media.HookPoints {
		scripts[p+".cmd"] = []byte("@echo off\r\necho " + p + "\r\n")
	}
	c.files["checks"] = writeFiles(t, t.TempDir(), scripts)
	c.checks = f.pushFolder(t, "checks:2", c.files["checks"], catalog.KindHook)
	c.badPoint = f.pushFolder(t, "bad-point:1", writeFiles(t, t.TempDir(), map[string][]byte{"after-boot.cmd": []byte("exit 0")}), catalog.KindHook)
	c.noScript = f.pushFolder(t, "no-script:1", writeFiles(t, t.TempDir(), map[string][]byte{"tools/after-apply.cmd": []byte("exit 0"), "readme.txt": nil}), catalog.KindHook)
	return c
}

// TestBuildKeyWithUpdatesAndHook builds a key with two update packages and
// a hook with a script for every point, reads deploy.cmd back with mtools
// and wants the packages added in order after the image is applied and
// before the disk is made to boot, and the hook called at each point.
func TestBuildKeyWithUpdatesAndHook(t *testing.T) {
	f := newFixture(t)
	c := f.pushCustom(t)
	res, img, err := f.build(t, media.Spec{WinPE: f.winpe, WIM: f.wim, Drivers: []catalog.Ref{f.drivers}, Model: model,
		Updates: []catalog.Ref{c.kb2, c.kb1}, Hooks: []catalog.Ref{c.checks}})
	if err != nil {
		t.Fatal(err)
	}
	im := testenv.ReadFATImage(t, img)
	im.Fsck(t)
	out := im.CopyOut(t)
	for key, local := range map[string]string{
		"updates/01-kb5044284.cab":        c.files["kb5044284:1"],
		"updates/02-kb5043080.msu":        c.files["kb5043080:1"],
		"hooks/01-checks/after-apply.cmd": filepath.Join(c.files["checks"], "after-apply.cmd"),
		"hooks/01-checks/tools/check.ps1": filepath.Join(c.files["checks"], "tools/check.ps1"),
	} {
		sameFile(t, filepath.Join(out, filepath.FromSlash(key)), local)
	}
	deploy := readScript(t, filepath.Join(out, "deploy.cmd"))
	// In the order deploy.cmd runs them.
	steps := []string{
		`call :hook before-partition "01-checks" "before-partition.cmd" "checks:2" || exit /b 1`,
		`diskpart /s "%WORK%\partitions.txt"`,
		`dism /Apply-Image /ImageFile:"%MEDIA%images\install.wim" /Index:%INDEX% /ApplyDir:W:\`,
		`call :hook after-apply "01-checks" "after-apply.cmd" "checks:2" || exit /b 1`,
		`call :update "01-kb5044284.cab" "kb5044284:1" || exit /b 1`,
		`call :update "02-kb5043080.msu" "kb5043080:1" || exit /b 1`,
		`dism /Image:W:\ /Add-Driver /Driver:"%MEDIA%drivers\Latitude 7440" /Recurse`,
		`call :hook after-drivers "01-checks" "after-drivers.cmd" "checks:2" || exit /b 1`,
		`W:\Windows\System32\bcdboot W:\Windows /s S: /f UEFI`,
		`call :hook before-reboot "01-checks" "before-reboot.cmd" "checks:2" || exit /b 1`,
		`echo == Done: remove the key and restart.`,
		`dism /Image:W:\ /Add-Package /PackagePath:"%MEDIA%updates\%~1" /ScratchDir:W:\Scratch`,
		`echo == FAILED: update package %~1 [%~2] was not added: DISM exit code %RC%.`,
		`echo == FAILED: hook %~2 [%~4] at %~1 exited with code %RC%: the deploy stopped there.`,
	}
	at := 0
	for _, step := range steps {
		i := strings.Index(deploy[at:], step)
		if i < 0 {
			t.Fatalf("deploy.cmd lacks %q after %q:\n%s", step, deploy[:at], deploy)
		}
		at += i + len(step)
	}
	if n := strings.Count(deploy, "call :hook "); n != 4 {
		t.Errorf("deploy.cmd calls hooks %d times, want once at each of the 4 points", n)
	}
	labels := res.Labels("v")
	if labels["media.updates.1"] != "kb5044284:1@"+res.Inputs[3].Digest || labels["media.hook.1"] != "checks:2@"+res.Inputs[5].Digest {
		t.Errorf("Labels = %v, want the updates and the hook numbered in order", labels)
	}
}

// TestBuildRefusesCustomisations covers the update packages and hooks
// Build refuses, writing nothing.
func TestBuildRefusesCustomisations(t *testing.T) {
	f := newFixture(t)
	c := f.pushCustom(t)
	for _, tc := range []struct {
		name  string
		spec  media.Spec
		err   error
		wants []string
	}{
		{"an update of another model", media.Spec{Updates: []catalog.Ref{c.kb1, c.kbOther}},
			media.ErrModelMismatch, []string{`--updates kb-opti:1 is only for "OptiPlex 7010"`, `not for media for "Latitude 7440"`}},
		{"a model's update on media for no model", media.Spec{Model: "-", Updates: []catalog.Ref{c.kb2}},
			media.ErrModelMismatch, []string{`--updates kb5044284:1 is only for "Latitude 7440"`, "no model in particular"}},
		{"an update that is no .msu or .cab", media.Spec{Updates: []catalog.Ref{c.notMSU}},
			nil, []string{`--updates kb-exe:1: update package "setup.exe" is not a .msu or .cab file`}},
		{"a hook as an update", media.Spec{Updates: []catalog.Ref{c.checks}},
			media.ErrWrongKind, []string{"--updates checks:2 is a hook image, want update"}},
		{"an update as a hook", media.Spec{Hooks: []catalog.Ref{c.kb1}},
			media.ErrWrongKind, []string{"--hook kb5043080:1 is an update image, want hook"}},
		{"an unknown hook point", media.Spec{Hooks: []catalog.Ref{c.badPoint}},
			media.ErrBadHook, []string{"--hook bad-point:1", `script after-boot.cmd is for no point of a deploy ("after-boot" is unknown)`, "before-partition.cmd, after-apply.cmd"}},
		{"a hook folder without a script", media.Spec{Hooks: []catalog.Ref{c.noScript}},
			media.ErrBadHook, []string{"--hook no-script:1", "the folder holds no script"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.WinPE, tc.spec.WIM, tc.spec.WorkDir = f.winpe, f.wim, t.TempDir()
			if tc.spec.Model == "-" {
				tc.spec.Model = ""
			} else {
				tc.spec.Model = model
			}
			_, img, err := f.build(t, tc.spec)
			if err == nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("Build = %v, want %v", err, tc.err)
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Build = %q, want it to say %q", err, want)
				}
			}
			if _, serr := os.Stat(img); serr == nil {
				t.Errorf("a refused build left %s", img)
			}
			if left, _ := os.ReadDir(tc.spec.WorkDir); len(left) != 0 {
				t.Errorf("a refused build left %v in its work folder", left)
			}
		})
	}
}

// recoveryZip zips files with Info-ZIP's zip and pushes the zip as a
// recovery drive for models, converted to a bundle as image push does.
func (f *fixture) recoveryZip(t *testing.T, ref string, files map[string][]byte, models ...string) (catalog.Ref, string) {
	t.Helper()
	dir := writeFiles(t, t.TempDir(), files)
	archive := filepath.Join(t.TempDir(), "recovery.zip")
	cmd := exec.Command(testenv.Tool(t, "zip", "zip"), "-r", "-q", archive, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zip: %v\n%s", err, out)
	}
	z, err := zip.OpenReader(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	tarFile := filepath.Join(t.TempDir(), "bundle.tar")
	out, err := os.Create(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.WriteZip(out, &z.Reader); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return f.push(t, ref, tarFile, catalog.KindRecovery, models...), dir
}

var recoveryFiles = map[string][]byte{
	"efi/boot/bootx64.efi":       random(21, 1500),
	"efi/microsoft/boot/bcd":     random(22, 16384),
	"sources/boot.wim":           random(23, 300<<10),
	"sources/install.swm":        random(24, 500<<10),
	"sources/install2.swm":       random(25, 200<<10),
	"sources/SurfaceTools/a.cmd": []byte("@echo off\r\n"),
	"bootmgr.efi":                random(26, 2000),
	"autorun.inf":                []byte("[AutoRun]\r\n"),
}

// TestBuildRecoveryKey lays a manufacturer's recovery drive, pushed from
// a zip, onto a key for its model and reads it back with mtools: every
// file where the zip had it, with its bytes, and nothing else (no
// deploy.cmd).
func TestBuildRecoveryKey(t *testing.T) {
	f := newFixture(t)
	ref, dir := f.recoveryZip(t, "surface-laptop-5-bmr:1", recoveryFiles, model)
	res, img, err := f.build(t, media.Spec{Recovery: ref, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	im := testenv.ReadFATImage(t, img)
	im.Fsck(t)
	if root := im.Dir(t, "/"); !strings.Contains(root, " autorun.inf\n") || !strings.Contains(root, " bootmgr.efi\n") || !strings.Contains(root, " efi\n") || strings.Contains(strings.ToLower(root), "deploy") {
		t.Errorf("mdir of the key's root:\n%s\nwant the recovery drive's files and no deploy.cmd", root)
	}
	if sources := im.Dir(t, "/sources"); !strings.Contains(sources, " install2.swm\n") || !strings.Contains(sources, " SurfaceTools\n") {
		t.Errorf("mdir /sources:\n%s", sources)
	}
	out := im.CopyOut(t)
	got := map[string]string{}
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			got[filepath.ToSlash(rel)] = fileSHA256(t, p)
		}
		return err
	})
	want := map[string]string{}
	for name := range recoveryFiles {
		want[name] = fileSHA256(t, filepath.Join(dir, filepath.FromSlash(name)))
	}
	if len(got) != len(want) {
		t.Errorf("the key holds %v, want %v", got, want)
	}
	for name, sum := range want {
		if got[name] != sum {
			t.Errorf("%s on the key has %q, the zip's file %s", name, got[name], sum)
		}
	}
	if l := res.Labels("v"); l["media.recovery"] != "surface-laptop-5-bmr:1@"+res.Inputs[0].Digest || l["media.wim-index"] != "" || res.WIMParts != 0 {
		t.Errorf("Labels = %v, WIMParts %d; want the recovery drive and no WIM", l, res.WIMParts)
	}
}

// TestBuildRefusesRecovery covers the recovery drives Build refuses,
// writing nothing.
func TestBuildRefusesRecovery(t *testing.T) {
	f := newFixture(t)
	surface, _ := f.recoveryZip(t, "surface-bmr:1", recoveryFiles, "Surface Laptop 5")
	noBoot, _ := f.recoveryZip(t, "no-boot:1", map[string][]byte{"sources/install.swm": random(1, 100)})
	for _, tc := range []struct {
		name string
		spec media.Spec
		err  error
		want string
	}{
		{"another model's", media.Spec{Recovery: surface, Model: model}, media.ErrModelMismatch,
			`--recovery surface-bmr:1 is only for "Surface Laptop 5", not for media for "Latitude 7440"`},
		{"a model's on media for no model", media.Spec{Recovery: surface}, media.ErrModelMismatch, "no model in particular"},
		{"one that cannot boot", media.Spec{Recovery: noBoot}, media.ErrNotBootable, "no EFI/Boot/bootx64.efi"},
		{"with a WIM", media.Spec{Recovery: noBoot, WIM: f.wim}, nil, "it takes no --winpe, --wim"},
		{"a WIM as one", media.Spec{Recovery: f.wim}, media.ErrWrongKind, "--recovery universal:2026.11 is a wim image, want recovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.WorkDir = t.TempDir()
			_, img, err := f.build(t, tc.spec)
			if err == nil || tc.err != nil && !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want %v saying %q", err, tc.err, tc.want)
			}
			if _, serr := os.Stat(img); serr == nil {
				t.Errorf("a refused build left %s", img)
			}
			if left, _ := os.ReadDir(tc.spec.WorkDir); len(left) != 0 {
				t.Errorf("a refused build left %v in its work folder", left)
			}
		})
	}
}

// TestRecoveryFolderFitsFAT32: a file of 4 GiB (a sparse one) is refused
// for a key's FAT32, naming it and what to do, and one byte less is not; a
// name FAT32 cannot hold is refused too.
func TestRecoveryFolderFitsFAT32(t *testing.T) {
	odd := writeFiles(t, t.TempDir(), map[string][]byte{"efi/boot/bootx64.efi": []byte("MZ"), "tools/what?.txt": nil})
	if err := media.CheckRecoveryFolder(odd); !errors.Is(err, fatdisk.ErrBadFile) || !strings.Contains(err.Error(), `tools/what?.txt: name "what?.txt" has a character FAT32 forbids`) ||
		!strings.Contains(err.Error(), "rename it in the recovery drive") {
		t.Errorf("CheckRecoveryFolder with what?.txt = %v, want %v naming it", err, fatdisk.ErrBadFile)
	}
	dir := writeFiles(t, t.TempDir(), map[string][]byte{"efi/boot/bootx64.efi": []byte("MZ")})
	os.MkdirAll(filepath.Join(dir, "sources"), 0o755)
	big := filepath.Join(dir, "sources", "install.wim")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<32-1); err != nil {
		t.Fatal(err)
	}
	if err := media.CheckRecoveryFolder(dir); err != nil {
		t.Errorf("CheckRecoveryFolder with a file of 4 GiB - 1 = %v, want nil", err)
	}
	os.Truncate(big, 1<<32)
	err := media.CheckRecoveryFolder(dir)
	if !errors.Is(err, media.ErrTooLargeForFAT32) {
		t.Fatalf("CheckRecoveryFolder with a file of 4 GiB = %v, want %v", err, media.ErrTooLargeForFAT32)
	}
	for _, want := range []string{"sources/install.wim is 4.0 GiB (4294967296 bytes)", "wimlib-imagex split install.wim install.swm 4000", "needs an NTFS key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckRecoveryFolder = %q, want it to say %q", err, want)
		}
	}
}
