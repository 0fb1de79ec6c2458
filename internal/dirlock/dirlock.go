package dirlock

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FileName is the lock file in a locked folder.
const FileName = ".imagefarm.lock"

// ErrBusy is returned, in a *BusyError, for a folder another process holds.
var ErrBusy = errors.New("folder in use")

// BusyError names the folder that is held and who holds it.
type BusyError struct {
	What    string // what the folder is: "data folder", "node cache"
	Dir     string
	Program string // the holder's program name, "" when the lock file does not say
	PID     int    // the holder's PID, 0 when the lock file does not say
	Instead string // what to use instead: "--data", "--cache folder"
}

func (e *BusyError) Error() string {
	holder := "another process (pid unknown)"
	if e.PID > 0 {
		holder = fmt.Sprintf("%s (pid %d)", cmp.Or(e.Program, "another process"), e.PID)
	}
	return fmt.Sprintf("%s %s is in use by %s; stop it first or use another %s", e.What, e.Dir, holder, e.Instead)
}

func (e *BusyError) Unwrap() error { return ErrBusy }

// Lock is a folder's lock, held until Release or until the process ends.
type Lock struct {
	f *os.File
}

// Acquire creates dir if needed and takes its lock for this process, or
// returns a *BusyError naming what holds it. what names the folder in
// errors ("data folder") and instead what to use in its place ("--data").
// A second Acquire of the same folder in the same process is refused too.
func Acquire(dir, what, instead string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := openLockFile(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s %s: %w", what, dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			program, pid := holder(path)
			return nil, &BusyError{What: what, Dir: dir, Program: program, PID: pid, Instead: instead}
		}
		return nil, fmt.Errorf("lock %s %s: %w", what, dir, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = fmt.Fprintf(f, "%d %s\n", os.Getpid(), program())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s %s: %w", what, dir, err)
	}
	return &Lock{f: f}, nil
}

// openLockFile opens (creating it) the regular file at path, and nothing
// else: a symbolic link planted there is not followed (it could make the
// owner truncate another file), and a FIFO or device is not written.
// Go opens it close-on-exec, so child processes do not inherit the lock.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link; remove it", path)
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file (%s); remove it", path, fi.Mode().Type())
		}
		return nil, err
	}
	return f, nil
}

// Release gives the folder up. The lock file stays, empty.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	err := l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
	return err
}

// Intact reports whether the folder's lock file is still the one l holds:
// false once the folder (or the file) was removed or replaced, when
// another process could take a lock of its own there.
func (l *Lock) Intact() bool {
	if l == nil || l.f == nil {
		return false
	}
	held, err := l.f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Stat(l.f.Name())
	return err == nil && os.SameFile(held, now)
}

// holder reads the PID and program the lock file at path names. The
// holder writes them just after taking the lock, so an empty file is
// read again for a moment before giving up.
func holder(path string) (string, int) {
	for range 10 {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", 0
		}
		pidText, program, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 {
			return program, pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", 0
}

// program is this process's program name: never its arguments, which may
// hold secrets.
func program() string { return filepath.Base(os.Args[0]) }
