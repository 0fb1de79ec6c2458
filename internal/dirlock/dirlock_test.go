package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imagefarm/imagefarm/internal/dirlock"
)

// holderEnv makes the test binary a process that takes the lock of the
// folder it names, says "locked" and waits to be killed.
const holderEnv = "DIRLOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holderEnv); dir != "" {
		if _, err := dirlock.Acquire(dir, "test folder", "folder"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

// startHolder runs a process that holds dir's lock, and returns it once
// it holds it.
func startHolder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("holder process said %q, want \"locked\"", line)
	}
	return cmd
}

// TestSecondOwnerIsRefusedUntilTheFirstDies holds a folder in another
// process: this one is refused, with that process's PID, and once the
// holder is SIGKILLed (its lock file left behind) the folder is free.
func TestSecondOwnerIsRefusedUntilTheFirstDies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	holder := startHolder(t, dir)

	_, err := dirlock.Acquire(dir, "data folder", "--data")
	var busy *dirlock.BusyError
	if !errors.As(err, &busy) || !errors.Is(err, dirlock.ErrBusy) {
		t.Fatalf("Acquire(%s) while another process holds it = %v, want a *BusyError", dir, err)
	}
	want := fmt.Sprintf("data folder %s is in use by %s (pid %d); stop it first or use another --data",
		dir, filepath.Base(os.Args[0]), holder.Process.Pid)
	if err.Error() != want {
		t.Errorf("Acquire(%s) = %q, want %q", dir, err, want)
	}

	holder.Process.Signal(syscall.SIGKILL)
	holder.Wait()
	if data, err := os.ReadFile(filepath.Join(dir, dirlock.FileName)); err != nil || !strings.HasPrefix(string(data), fmt.Sprint(holder.Process.Pid)) {
		t.Fatalf("lock file after SIGKILL = %q, %v; want the dead holder's PID still in it", data, err)
	}
	l, err := dirlock.Acquire(dir, "data folder", "--data")
	if err != nil {
		t.Fatalf("Acquire(%s) after its holder was killed = %v, want the lock", dir, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, dirlock.FileName)); !strings.HasPrefix(string(data), fmt.Sprintf("%d ", os.Getpid())) {
		t.Errorf("lock file = %q, want this process's PID %d", data, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestSameProcessTwiceAndRelease: a second Acquire in the same process is
// refused too, and Release frees the folder.
func TestSameProcessTwiceAndRelease(t *testing.T) {
	dir := t.TempDir()
	l, err := dirlock.Acquire(dir, "node cache", "--cache folder")
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(dir, "node cache", "--cache folder")
	if want := fmt.Sprintf("(pid %d)", os.Getpid()); !errors.Is(err, dirlock.ErrBusy) || !strings.Contains(fmt.Sprint(err), want) {
		t.Errorf("second Acquire in one process = %v, want ErrBusy naming %s", err, want)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l, err = dirlock.Acquire(dir, "node cache", "--cache folder")
	if err != nil {
		t.Fatalf("Acquire after Release = %v", err)
	}
	l.Release()
}

// TestIntact: a lock whose folder was removed is no longer intact, and
// the folder can then be taken by another owner.
func TestIntact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	l, err := dirlock.Acquire(dir, "node cache", "--cache folder")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if !l.Intact() {
		t.Fatal("Intact() = false for a lock just taken")
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if l.Intact() {
		t.Error("Intact() = true after its folder was removed")
	}
	other, err := dirlock.Acquire(dir, "node cache", "--cache folder")
	if err != nil {
		t.Fatalf("Acquire of the recreated folder = %v", err)
	}
	other.Release()
}

// TestNotAFolder: a path that is a file is refused with what it is.
func TestNotAFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	if _, err := dirlock.Acquire(file, "data folder", "--data"); err == nil || errors.Is(err, dirlock.ErrBusy) || !strings.Contains(err.Error(), "data folder") {
		t.Errorf("Acquire(a file) = %v, want an error naming the data folder", err)
	}
}

// TestLockFileMustBeARegularFile: a symbolic link planted as the lock file
// is not followed (its target keeps its bytes), and a FIFO is not opened
// for writing; both are refused, naming the file.
func TestLockFileMustBeARegularFile(t *testing.T) {
	target := filepath.Join(t.TempDir(), "precious")
	os.WriteFile(target, []byte("keep me"), 0o644)
	linked := t.TempDir()
	if err := os.Symlink(target, filepath.Join(linked, dirlock.FileName)); err != nil {
		t.Fatal(err)
	}
	fifo := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifo, dirlock.FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{linked: "is a symbolic link; remove it", fifo: "is not a regular file"} {
		l, err := dirlock.Acquire(dir, "node cache", "--cache folder")
		if err == nil {
			l.Release()
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dirlock.FileName) {
			t.Errorf("Acquire(%s) = %v, want an error saying the lock file %s", dir, err, want)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("the symbolic link's target holds %q, want it untouched", b)
	}
}
