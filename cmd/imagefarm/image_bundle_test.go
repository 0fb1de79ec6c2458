package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBundlePushPull(t *testing.T) {
	store := "file://" + t.TempDir()
	dir := filepath.Join(t.TempDir(), "latitude-7440")
	for name, data := range map[string]string{
		"Audio/RTKVHD64.inf": "[Version]", "Audio/RTKVHD64.sys": strings.Repeat("sys", 100000), "Net/e1d.inf": "[Version]",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, "--store", store, "image", "push", "drivers-7440:1", dir, "--kind", "drivers", "--model", "Latitude 7440")
	if !strings.Contains(out, "pushed drivers-7440:1") {
		t.Fatalf("push said %q", out)
	}
	if again := mustRun(t, "--store", store, "image", "push", "drivers-7440:2", dir, "--kind", "drivers"); !strings.Contains(again, "0 B of it new") {
		t.Errorf("pushing the same folder again said %q, want 0 B new (a bundle is deterministic)", again)
	}
	if text := mustRun(t, "--store", store, "image", "inspect", "drivers-7440:1"); !strings.Contains(text, "latitude-7440") || !strings.Contains(text, "Latitude 7440") {
		t.Errorf("inspect does not show the folder name and model:\n%s", text)
	}

	unpacked := filepath.Join(t.TempDir(), "drivers")
	mustRun(t, "--store", store, "image", "pull", "drivers-7440:1", unpacked)
	if out, err := exec.Command("diff", "-r", dir, unpacked).CombinedOutput(); err != nil {
		t.Errorf("diff -r of the pushed and pulled folders: %v\n%s", err, out)
	}
	tarFile := filepath.Join(t.TempDir(), "drivers.tar")
	mustRun(t, "--store", store, "image", "pull", "drivers-7440:1", tarFile, "--tar")
	if out, err := exec.Command("tar", "-tf", tarFile).CombinedOutput(); err != nil || !strings.Contains(string(out), "Audio/RTKVHD64.sys") {
		t.Errorf("tar -tf of the pulled bundle: %v\n%s", err, out)
	}

	exe := filepath.Join(t.TempDir(), "setup.exe")
	badHook := t.TempDir()
	os.WriteFile(exe, []byte("MZ"), 0o644)
	os.WriteFile(filepath.Join(badHook, "first-boot.cmd"), []byte("exit 0"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "push", "d:3", tarFile, "--kind", "drivers"}, "--kind drivers takes a folder"},
		{[]string{"image", "push", "d:3", dir, "--kind", "wim"}, "a folder is pushed with --kind drivers, winpe, hook or recovery; a wim is one file"},
		{[]string{"image", "push", "d:3", dir, "--kind", "update"}, "; an update is one file"},
		{[]string{"image", "push", "d:3", exe, "--kind", "update"}, `update package "setup.exe" is not a .msu or .cab file`},
		{[]string{"image", "push", "d:3", dir, "--kind", "hook"}, "the folder holds no script: a hook folder holds a .cmd script named after the point it runs at"},
		{[]string{"image", "push", "d:3", badHook, "--kind", "hook"}, `script first-boot.cmd is for no point of a deploy ("first-boot" is unknown)`},
		{[]string{"image", "pull", "drivers-7440:1", unpacked}, "already exists; unpack into a new folder"},
	} {
		if out, err := run(t, append([]string{"--store", store}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	if out, err := run(t, "--store", store, "image", "inspect", "d:3"); err == nil {
		t.Errorf("a refused push left d:3:\n%s", out)
	}
}
