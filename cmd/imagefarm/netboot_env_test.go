package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestBuildEnvPushPull: netboot build-env writes the environment and
// pushes it as a bootenv image; building and pushing again as another
// version uploads nothing new (two builds are the same bytes); image ls
// shows its kind; image pull unpacks the same folder.
func TestBuildEnvPushPull(t *testing.T) {
	testenv.DebianKernel(t)
	init := testenv.StaticProgram(t)
	store := "--store=file://" + t.TempDir()
	out := filepath.Join(t.TempDir(), "env")
	var first struct {
		KernelRelease string   `json:"kernel_release"`
		Modules       []string `json:"modules"`
		Push          struct {
			Digest   string `json:"digest"`
			NewBytes int64  `json:"new_bytes"`
		} `json:"push"`
	}
	text := mustRun(t, store, "netboot", "build-env", "--init", init, "--out", out, "--push", "deploy:1", "--json")
	if err := json.Unmarshal([]byte(text), &first); err != nil || first.Push.NewBytes == 0 || len(first.Modules) < 40 {
		t.Fatalf("build-env --json said %s (%v); want a push that stored bytes and the modules", text, err)
	}
	again := mustRun(t, store, "netboot", "build-env", "--init", init, "--module", "virtio_net", "--push", "deploy:2")
	if !strings.Contains(again, "pushed deploy:2") || !strings.Contains(again, "0 B of it new") {
		t.Errorf("building and pushing again said %q, want 0 B new", again)
	}
	taken := filepath.Join(t.TempDir(), "env")
	if _, err := run(t, store, "netboot", "build-env", "--init", init, "--out", taken, "--push", "deploy:1"); err == nil || !strings.Contains(err.Error(), "deploy:1") {
		t.Errorf("build-env --push of a taken version = %v, want it refused", err)
	}
	if _, err := os.Stat(taken); !os.IsNotExist(err) {
		t.Errorf("build-env --push of a taken version built %s anyway", taken)
	}
	if ls := mustRun(t, store, "image", "ls"); !strings.Contains(ls, "bootenv") {
		t.Errorf("image ls does not show the kind bootenv:\n%s", ls)
	}
	pulled := filepath.Join(t.TempDir(), "pulled")
	mustRun(t, store, "image", "pull", "deploy:1", pulled)
	if out, err := exec.Command("diff", "-r", out, pulled).CombinedOutput(); err != nil {
		t.Errorf("diff -r of the built and pulled environments: %v\n%s", err, out)
	}
}

// TestBuildEnvRefuses: bad flags are refused, naming what was wrong and
// what to do, with nothing written.
func TestBuildEnvRefuses(t *testing.T) {
	testenv.DebianKernel(t)
	init := testenv.StaticProgram(t)
	store := "--store=file://" + t.TempDir()
	folder := t.TempDir()
	script := filepath.Join(folder, "init.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"netboot", "build-env"}, "nothing to do: pass --out FOLDER"},
		{[]string{"netboot", "build-env", "--push", "deploy"}, `--push "deploy": want NAME:VERSION`},
		{[]string{"netboot", "build-env", "--push", "deploy@sha256:" + strings.Repeat("a", 64)}, "want NAME:VERSION"},
		{[]string{"netboot", "build-env", "--out", folder}, "already exists: the environment is written to a new folder"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "a", "b")}, "does not exist: make it first"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "env"), "--init", script}, "is not an ELF executable"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "env"), "--kernel", script}, "not a Linux kernel image"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "env"), "--init", init, "--module", "no_such_nic"}, "no module no_such_nic"},
		{[]string{"image", "push", "deploy:1", folder, "--kind", "bootenv"}, "a deploy environment is built and pushed by imagefarm netboot build-env --push deploy:1"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "env"), "--init", init, "--ca", script}, "give the farm's ca.crt"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "env"), "--init", init, "--trusted-keys", script}, "give the farm's signing.pub"},
		{[]string{"netboot", "build-env", "--out", filepath.Join(folder, "env"), "--init", init, "--trusted-keys", filepath.Join(folder, "none.pub")}, "none.pub"},
	} {
		if out, err := run(t, append([]string{store}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(folder, "*")); len(left) != 1 {
		t.Errorf("refused builds left %v in %s", left, folder)
	}
}
