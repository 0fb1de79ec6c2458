package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cliProcess is imagefarm running in a process of its own, its output
// read line by line.
type cliProcess struct {
	cmd   *exec.Cmd
	lines chan string // closed at the end of its output
}

// buildCLI builds imagefarm, without the race detector: under it, the
// farm's NATS logins (bcrypt) outlast the NATS client's connect timeout.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imagefarm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startCLI(t *testing.T, bin string, args ...string) *cliProcess {
	t.Helper()
	cmd := exec.Command(bin, args...)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &cliProcess{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			t.Logf("imagefarm[%d]: %s", cmd.Process.Pid, sc.Text())
			p.lines <- sc.Text()
		}
	}()
	done := make(chan struct{})
	go func() { cmd.Wait(); w.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		for range p.lines { // the reader logs nothing after the test
		}
	})
	return p
}

// waitFor waits until the process prints a line holding s.
func (p *cliProcess) waitFor(t *testing.T, s string) {
	t.Helper()
	if _, ok := p.read(t, s); !ok {
		t.Fatalf("imagefarm %s ended without printing %q", strings.Join(p.cmd.Args[1:], " "), s)
	}
}

// output waits for the process to end and returns what it printed; it
// fails the test at once if the process prints a line holding never.
func (p *cliProcess) output(t *testing.T, never string) string {
	t.Helper()
	out, found := p.read(t, never)
	if found {
		t.Fatalf("imagefarm %s printed %q:\n%s", strings.Join(p.cmd.Args[1:], " "), never, out)
	}
	return out
}

// read reads lines until one holds s (true) or the output ends (false),
// and returns them.
func (p *cliProcess) read(t *testing.T, s string) (string, bool) {
	t.Helper()
	var out strings.Builder
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return out.String(), false
			}
			out.WriteString(line + "\n")
			if strings.Contains(line, s) {
				return out.String(), true
			}
		case <-timeout:
			t.Fatalf("imagefarm %s: no %q and no end within 60s:\n%s", strings.Join(p.cmd.Args[1:], " "), s, out.String())
		}
	}
}

// TestOneOwnerPerDataFolderAndNodeCache runs a dev farm in a process of
// its own: a second dev farm on its data folder, and an imager or a write
// on its node cache, each in a process of its own too, are refused with
// its PID before they change anything; once it is SIGKILLed (leaving its
// lock files) a new dev farm starts on the same folder.
func TestOneOwnerPerDataFolderAndNodeCache(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dev")
	devArgs := []string{"dev", "--data", data, "--drives", "1", "--drive-size", fmt.Sprint(32 << 20)}
	bin := buildCLI(t)
	first := startCLI(t, bin, devArgs...)
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
		p := startCLI(t, bin, tc.args...)
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
	for range first.lines { // its output ends when it is dead
	}
	second := startCLI(t, bin, devArgs...)
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
