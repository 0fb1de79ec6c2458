package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// cliBinary is imagefarm built from this package, once, for the tests
// that run it as a process of its own (its signals, exit status, locks),
// without the race detector: at the speed users get, and because under it
// the farm's NATS logins (bcrypt) outlast the NATS client's connect
// timeout.
var cliBinary builtBinary

type builtBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// get returns the binary's path, building it first.
func (b *builtBinary) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "imagefarm-cli-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "imagefarm")
		if out, err := exec.Command("go", "build", "-o", b.path, ".").CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// remove removes the binary, if it was built.
func (b *builtBinary) remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// cliProc is imagefarm running as a process of its own.
type cliProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer // stdout and stderr
	done chan struct{}
	code int
}

// lockedBuffer is a bytes.Buffer written by a process and read by a test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startCLI starts imagefarm with args; it is killed if the test ends first.
func startCLI(t *testing.T, args ...string) *cliProc {
	t.Helper()
	return startCLIStdout(t, nil, args...)
}

// startCLIStdout is startCLI with stdout going to the file stdout, when
// not nil, instead of the output kept.
func startCLIStdout(t *testing.T, stdout *os.File, args ...string) *cliProc {
	t.Helper()
	p := &cliProc{cmd: exec.Command(cliBinary.get(t), args...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			p.code = exit.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("imagefarm %s said:\n%s", strings.Join(args, " "), p.out)
		}
	})
	return p
}

// waitUntil waits up to a minute for ready, failing the test (with what
// the process said) if it ends or the time runs out first.
func (p *cliProc) waitUntil(t *testing.T, what string, ready func() bool) {
	t.Helper()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("imagefarm %s: %s", strings.Join(p.cmd.Args[1:], " "), what), func() bool {
		if p.ended() {
			t.Fatalf("imagefarm %s ended (status %d) before %s", strings.Join(p.cmd.Args[1:], " "), p.code, what)
		}
		return ready()
	})
}

// ended reports whether the process has ended.
func (p *cliProc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// said reports whether the process has printed s.
func (p *cliProc) said(s string) func() bool {
	return func() bool { return strings.Contains(p.out.String(), s) }
}

// signal sends sig and waits for the process to end; it returns how long
// that took (or fails the test after 10s) and the exit status.
func (p *cliProc) signal(t *testing.T, sig syscall.Signal) (took time.Duration, code int) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
	select {
	case <-p.done:
		return time.Since(start), p.code
	case <-time.After(10 * time.Second):
		t.Fatalf("imagefarm %s still runs 10s after %v:\n%s", strings.Join(p.cmd.Args[1:], " "), sig, p.out)
		return 0, 0
	}
}

// waitFor waits until the process has printed s.
func (p *cliProc) waitFor(t *testing.T, s string) {
	t.Helper()
	p.waitUntil(t, fmt.Sprintf("%q printed", s), p.said(s))
}

// output waits up to a minute for the process to end and returns what it
// printed; it fails the test at once if the process prints never.
func (p *cliProc) output(t *testing.T, never string) string {
	t.Helper()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("imagefarm %s to end", strings.Join(p.cmd.Args[1:], " ")), func() bool {
		if p.said(never)() {
			t.Fatalf("imagefarm %s printed %q", strings.Join(p.cmd.Args[1:], " "), never)
		}
		return p.ended()
	})
	out := p.out.String()
	if strings.Contains(out, never) {
		t.Fatalf("imagefarm %s printed %q", strings.Join(p.cmd.Args[1:], " "), never)
	}
	return out
}
