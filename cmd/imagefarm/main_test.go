package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/internal/sample"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var minioServer testenv.SharedMinIO

func TestMain(m *testing.M) {
	code := m.Run()
	minioServer.Stop()
	cliBinary.remove()
	os.Exit(code)
}

// run executes imagefarm in-process with args and returns what it printed
// and its error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("imagefarm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func writeDiskImage(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := sample.WriteDiskImage(f, size, seed); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestImageLifecycle(t *testing.T) {
	for name, store := range map[string]string{"file": "file://" + t.TempDir(), "s3": minioServer.Get(t).NewBucket(t)} {
		t.Run(name, func(t *testing.T) {
			img := writeDiskImage(t, 24<<20, 7)
			var push struct {
				Digest   string `json:"digest"`
				NewBytes int64  `json:"new_bytes"`
			}
			out := mustRun(t, "--store", store, "image", "push", "fleet:1", img, "--model", "Latitude 7440", "--label", "os=win11", "--channel", "stable", "--json")
			if err := json.Unmarshal([]byte(out), &push); err != nil || !strings.HasPrefix(push.Digest, "sha256:") || push.NewBytes == 0 {
				t.Fatalf("push --json = %s (%v)", out, err)
			}
			again := mustRun(t, "--store", store, "image", "push", "fleet:2", img)
			if !strings.Contains(again, "0 B of it new in 0 new chunks") {
				t.Errorf("second push of the same bytes said %q, want 0 B new", again)
			}
			var list []imageJSON
			json.Unmarshal([]byte(mustRun(t, "--store", store, "image", "ls", "--json")), &list)
			if len(list) != 2 || list[0].Version != "1" || list[0].Channels[0] != "stable" || list[0].Models[0] != "Latitude 7440" {
				t.Errorf("ls --json = %+v", list)
			}
			text := mustRun(t, "--store", store, "image", "inspect", "fleet:stable")
			for _, want := range []string{"fleet", push.Digest, "Latitude 7440", "os=win11", "disk"} {
				if !strings.Contains(text, want) {
					t.Errorf("inspect output lacks %q:\n%s", want, text)
				}
			}
			pulled := filepath.Join(t.TempDir(), "pulled.img")
			mustRun(t, "--store", store, "image", "pull", "fleet@"+push.Digest, pulled)
			if got, want := sha256File(t, pulled), sha256File(t, img); got != want {
				t.Errorf("pulled sha256 %s, want %s", got, want)
			}
			mustRun(t, "--store", store, "image", "tag", "fleet:2", "stable")
			if out := mustRun(t, "--store", store, "image", "rm", "fleet:1"); !strings.Contains(out, "removed fleet:1") {
				t.Errorf("rm said %q", out)
			}
			if out := mustRun(t, "--store", store, "image", "gc", "--grace", "0s"); !strings.Contains(out, "deleted 1 manifest") {
				t.Errorf("gc said %q, want fleet:1's manifest deleted", out)
			}
		})
	}
}

func TestBadInputIsNamed(t *testing.T) {
	store := "file://" + t.TempDir()
	img := writeDiskImage(t, 1<<20, 8)
	port, _ := testenv.FreePort()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "inspect", "nothing:1"}, "not found: nothing:1"},
		{[]string{"image", "pull", "nothing:1", "-"}, "not found: nothing:1"},
		{[]string{"image", "push", "../etc:1", img}, `name "../etc"`},
		{[]string{"image", "push", "a/b:1", img}, "bad image reference"},
		{[]string{"image", "push", "a:\x01", img}, "bad image reference"},
		{[]string{"image", "push", "ok:1", filepath.Join(t.TempDir(), "missing.img")}, "no such file"},
		{[]string{"image", "push", "ok:1", img, "--kind", "tarball"}, "--kind"},
		{[]string{"image", "push", "ok:1", img, "--kind", "wim"}, "not a WIM file"},
		{[]string{"--store", fmt.Sprintf("s3://bkt/p?endpoint=127.0.0.1:%d&insecure=true&retries=1", port), "image", "ls"}, fmt.Sprintf("127.0.0.1:%d", port)},
		{[]string{"--store", "", "image", "ls"}, "IMAGEFARM_STORE"},
	} {
		args := append([]string{"--store", store}, tc.args...)
		out, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}

// wimlib runs wimlib-imagex; the tests need it and say how to get it.
func wimlib(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("wimlib-imagex"); err != nil {
		t.Fatal("wimlib-imagex not found: install Debian's wimtools (scripts/test.sh does)")
	}
	out, err := exec.Command("wimlib-imagex", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wimlib-imagex %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestInspectWIMMatchesWimlib(t *testing.T) {
	store := "file://" + t.TempDir()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "Windows", "System32"), 0o755)
	rnd := make([]byte, 3<<20) // incompressible, so that the WIM splits into parts
	rand.Read(rnd)
	for i := range 4 {
		os.WriteFile(filepath.Join(tree, "Windows", "System32", fmt.Sprintf("drv%d.sys", i)), rnd[i<<19:(i+1)<<19+1<<18], 0o644)
	}
	wim := filepath.Join(dir, "install.wim")
	wimlib(t, "capture", tree, wim, "Windows 11 Pro", "--compress=LZX",
		"--image-property", "WINDOWS/EDITIONID=Professional", "--image-property", "WINDOWS/ARCH=9",
		"--image-property", "WINDOWS/VERSION/MAJOR=10", "--image-property", "WINDOWS/VERSION/MINOR=0",
		"--image-property", "WINDOWS/VERSION/BUILD=22631", "--image-property", "WINDOWS/VERSION/SPBUILD=2861")
	wimlib(t, "append", tree, wim, "Windows 11 Education", "--image-property", "WINDOWS/EDITIONID=Education", "--image-property", "WINDOWS/ARCH=12")
	mustRun(t, "--store", store, "image", "push", "recovery:1", wim, "--kind", "wim")
	text := mustRun(t, "--store", store, "image", "inspect", "recovery:1")
	info := wimlib(t, "info", wim)
	for i, name := range wimlibField(info, "Name") {
		edition, arch := wimlibField(info, "Edition ID")[i], wimlibField(info, "Architecture")[i]
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+%s\s+%s\s+\S+\s+%s\s`, i+1, regexp.QuoteMeta(name), edition, map[string]string{"x86_64": "amd64", "ARM64": "arm64"}[arch]))
		if !row.MatchString(text) {
			t.Errorf("inspect has no row for image %d %q %s %s that wimlib info reports:\n%s", i+1, name, edition, arch, text)
		}
	}
	if !strings.Contains(text, "10.0.22631.2861") || !strings.Contains(text, "2 images, part 1 of 1, lzx") {
		t.Errorf("inspect lacks the build or the WIM summary:\n%s", text)
	}
	parts := filepath.Join(dir, "install.swm")
	wimlib(t, "split", wim, parts, "1")
	swms, _ := filepath.Glob(filepath.Join(dir, "install*.swm"))
	if len(swms) < 2 {
		t.Fatalf("split made %d parts, want at least 2", len(swms))
	}
	mustRun(t, "--store", store, "image", "push", "recovery:1-part2", filepath.Join(dir, "install2.swm"), "--kind", "wim")
	if text := mustRun(t, "--store", store, "image", "inspect", "recovery:1-part2"); !strings.Contains(text, fmt.Sprintf("part 2 of %d", len(swms))) {
		t.Errorf("inspect of part 2 lacks \"part 2 of %d\":\n%s", len(swms), text)
	}
}

// wimlibField returns the values of "Key: value" lines of wimlib info output.
func wimlibField(info, key string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(key)+`:\s+(.*)$`).FindAllStringSubmatch(info, -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

func TestDevDemo(t *testing.T) {
	out := mustRun(t, "dev", "--demo", "--data", t.TempDir(), "--size", fmt.Sprint(16<<20), "--drive-size", fmt.Sprint(32<<20))
	if !strings.Contains(out, "checked independently: all 4 drives hold the sample's sha256") || !strings.Contains(out, "SUCCEEDED: 4 of 4 drives verified") ||
		len(regexp.MustCompile(`DONE\s+[\d.]+\s+sha256:`).FindAllString(out, -1)) != 4 {
		t.Errorf("dev --demo did not verify:\n%s", out)
	}
}

// TestNoStoreSaysHow: every command that opens the catalog refuses an
// empty --store with the same message, naming both kinds of store URL
// and the variable (openCatalog is the one way to open it).
func TestNoStoreSaysHow(t *testing.T) {
	for _, args := range [][]string{
		{"image", "ls"},
		{"write", "x:1", "--drive", filepath.Join(t.TempDir(), "d.img")},
		{"imager", "--node-id", "n1", "--controller", "127.0.0.1:1", "--insecure"},
	} {
		out, err := run(t, append([]string{"--store", ""}, args...)...)
		if err == nil || err.Error() != errNoStore.Error() {
			t.Errorf("imagefarm --store '' %q = %v (%s), want %q", args, err, out, errNoStore)
		}
	}
}

// TestFlagZeroIsNotTheDefault: a duration or size flag whose component
// reads 0 as "the default" refuses 0 (and less) naming the default, rather
// than passing it through to mean something --help does not say;
// --catalog-scan-interval, whose 0 means never, refuses only less.
func TestFlagZeroIsNotTheDefault(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"controller", "--heartbeat-ttl", "0"}, "want more than 0, such as 15s (the default)"},
		{[]string{"controller", "--heartbeat-ttl", "-5s"}, "want more than 0"},
		{[]string{"controller", "--catalog-scan-interval", "-1s"}, "want 0s or more, such as 1m0s (the default)"},
		{[]string{"dev", "--heartbeat-ttl", "0s"}, "want more than 0"},
		{[]string{"imager", "--storage-retry-budget", "0"}, "want more than 0, such as 2m0s (the default)"},
		{[]string{"write", "x:1", "--storage-retry-budget", "0"}, "want more than 0"},
		{[]string{"write", "x:1", "--window", "0"}, "want more than 0, such as 8 (the default)"},
		{[]string{"image", "push", "x:1", "f", "--chunk-size", "0"}, "want more than 0"},
		{[]string{"ca", "issue", "--valid-for", "0"}, "want more than 0"},
		{[]string{"media", "build", "--winpe", "a:1", "--wim", "b:1", "--model", "m", "--out", "x.img", "--split-size", "0"}, "--split-size \"0\": want a size from 1MiB"},
	} {
		// A flag taken would start a controller or a dev farm: bounded, so
		// that this fails rather than hangs.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(tc.args)
		err := cmd.ExecuteContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out.String(), tc.want)
		}
	}
}
