package userpath

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Open opens the regular file at path for reading. Anything else is
// refused with a *TypeError before it is opened, and the open itself never
// blocks: it is made non-blocking and checked again, so a file swapped for
// a FIFO in between is refused too rather than waited on.
func Open(path string) (*os.File, error) {
	if err := CheckFile(path); err != nil {
		return nil, err
	}
	// O_NONBLOCK: the open of a FIFO returns at once instead of waiting
	// for a writer (Go then makes a regular file's descriptor blocking
	// again); O_NOCTTY: a terminal never becomes ours.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = wrongType(path, fi.Mode(), wantInput)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile is os.ReadFile for a path a person gave: see Open.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// CheckFile returns a *TypeError unless path, its symbolic links followed,
// is a regular file, and the os error if it cannot be looked at (missing).
// It is for a file that a library opens itself; Open checks as it opens.
func CheckFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return wrongType(path, fi.Mode(), wantInput)
	}
	return nil
}

// CheckFolder returns a *TypeError unless path, its symbolic links
// followed, is a folder, and the os error if it cannot be looked at.
func CheckFolder(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return wrongType(path, fi.Mode(), wantFolder)
	}
	return nil
}
