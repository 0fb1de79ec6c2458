package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOneOwnerPerDataFolderAndNodeCache runs a dev farm in a process of
// its own: a second dev farm on its data folder, and an imager or a write
// on its node cache, each in a process of its own too, are refused with
// its PID before they change anything; once it is SIGKILLed (leaving its
// lock files) a new dev farm starts on the same folder.
func TestOneOwnerPerDataFolderAndNodeCache(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dev")
	devArgs := []string{"dev", "--data", data, "--drives", "1", "--drive-size", fmt.Sprint(32 << 20)}
	first := startCLI(t, devArgs...)
	first.waitFor(t, "dev farm in")
	pid := first.cmd.Process.Pid

	store, _ := pushedImage(t, 4<<20)
	drives := t.TempDir()
	key := filepath.Join(drives, "key.img")
	if err := os.WriteFile(key, bytes.Repeat([]byte{0xEE}, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(data, "cache")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{devArgs, fmt.Sprintf("imagefarm: data folder %s is in use by imagefarm (pid %d); stop it first or use another --data", data, pid)},
		{[]string{"imager", "--node-id", "n-2", "--controller", "127.0.0.1:1", "--insecure", "--allow-unsigned", "--store", store, "--cache", cache},
			fmt.Sprintf("imagefarm: node cache %s is in use by imagefarm (pid %d); stop it first or use another --cache folder", cache, pid)},
		{[]string{"write", "disk:1", "--virtual-drives", drives, "--drive", "virt-key.img", "--store", store, "--cache", cache},
			fmt.Sprintf("imagefarm: node cache %s is in use by imagefarm (pid %d)", cache, pid)},
	} {
		before := listTree(t, data)
		p := startCLI(t, tc.args...)
		out := p.output(t, "dev farm in")
		if !strings.Contains(out, tc.want) || p.cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("imagefarm %s exited %d:\n%s\nwant exit 1 with %q", tc.args[0], p.cmd.ProcessState.ExitCode(), out, tc.want)
		}
		if after := listTree(t, data); after != before {
			t.Errorf("refused imagefarm %s changed the data folder:\nbefore:\n%s\nafter:\n%s", tc.args[0], before, after)
		}
		if b, _ := os.ReadFile(key); len(bytes.Trim(b, "\xEE")) != 0 {
			t.Errorf("refused imagefarm %s wrote the virtual drive", tc.args[0])
		}
	}

	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.done
	second := startCLI(t, devArgs...)
	second.waitFor(t, "dev farm in")
}

// listTree lists the paths under dir, for comparing before and after.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.Contains(p, string(filepath.Separator)+"nats"+string(filepath.Separator)) {
			fmt.Fprintf(&b, "%s %d\n", p, fi.Size())
		}
		return nil
	})
	return b.String()
}
