package userpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Options say what Create and WriteFile may do at the path.
type Options struct {
	// Force lets an existing regular file be replaced; without it, a path
	// that exists is refused.
	Force bool
	// Perm is the mode of the file written; 0644 when 0.
	Perm fs.FileMode
	// NoSync skips syncing the file before it is renamed into place, for
	// output that can be made again byte for byte.
	NoSync bool
}

// Output is a file being written for a path a person gave: a hidden
// temporary file beside it, which Commit renames to the path and Abort
// removes. Nothing appears at the path before Commit.
type Output struct {
	f     *os.File
	given string // the path as given, for messages and the check at Commit
	opts  Options
	done  bool
}

// Create starts the output for path, which must be new, in a folder that
// exists, or (with opts.Force) an existing regular file, or a symbolic
// link to one: the link is kept and the file it names is replaced. A
// device node, a FIFO, a socket or a folder is refused with a *TypeError;
// an existing file without Force with an error that is fs.ErrExist.
func Create(path string, opts Options) (*Output, error) {
	dst, err := target(path, opts.Force)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Dir(dst), filepath.Base(dst)
	if len(base) > 200 { // leave room for the suffix within a name's 255 bytes
		base = base[:200]
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary file's name means nothing to the reader
		}
		return nil, fmt.Errorf("write %s: create a file in %s: %w", path, dir, err)
	}
	track(f.Name(), true)
	o := &Output{f: f, given: path, opts: opts}
	perm := opts.Perm
	if perm == 0 {
		perm = 0o644
	}
	if err := f.Chmod(perm); err != nil {
		o.Abort()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return o, nil
}

// Write implements io.Writer.
func (o *Output) Write(p []byte) (int, error) {
	n, err := o.f.Write(p)
	return n, o.named(err)
}

// WriteAt implements io.WriterAt.
func (o *Output) WriteAt(p []byte, off int64) (int, error) {
	n, err := o.f.WriteAt(p, off)
	return n, o.named(err)
}

// Truncate sets the file's size.
func (o *Output) Truncate(size int64) error { return o.named(o.f.Truncate(size)) }

// named makes an error about the temporary file (a full disk, say) name
// the path it stands for, which is what the reader knows.
func (o *Output) named(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == o.f.Name() {
		return &fs.PathError{Op: pe.Op, Path: o.given, Err: pe.Err}
	}
	return err
}

// Commit syncs the file (unless Options.NoSync) and renames it to the
// path, after checking the path again: what is there may have changed
// while the file was written. On error nothing is left behind.
func (o *Output) Commit() error {
	if o.done {
		return fmt.Errorf("write %s: already committed or aborted", o.given)
	}
	var err error
	if !o.opts.NoSync {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	var dst string
	if err == nil {
		dst, err = target(o.given, o.opts.Force)
	}
	if err == nil {
		err = os.Rename(o.f.Name(), dst)
	}
	if err != nil {
		o.Abort()
		return fmt.Errorf("write %s: %w", o.given, err)
	}
	track(o.f.Name(), false)
	o.done = true
	return nil
}

// Abort removes the temporary file, unless Commit has put it in place; it
// is safe to defer right after Create.
func (o *Output) Abort() {
	if o.done {
		return
	}
	o.done = true
	o.f.Close()
	os.Remove(o.f.Name())
	track(o.f.Name(), false)
}

// WriteFile writes data to path as Create and Commit do.
func WriteFile(path string, data []byte, opts Options) error {
	o, err := Create(path, opts)
	if err != nil {
		return err
	}
	defer o.Abort()
	if _, err := o.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return o.Commit()
}

// MakeFolder makes the folder path, with its parents, unless it exists;
// something there that is not a folder is refused with a *TypeError.
func MakeFolder(path string, perm fs.FileMode) error {
	err := CheckFolder(path)
	if errors.Is(err, fs.ErrNotExist) {
		err = os.MkdirAll(path, perm)
	}
	return err
}

// CheckOutput returns the error Create would for path, without creating
// anything: for a command to refuse a bad output path before it works.
func CheckOutput(path string, force bool) error {
	_, err := target(path, force)
	return err
}

// target is where output for path goes: path itself, or the regular file
// its symbolic link names. It refuses what Create refuses.
func target(path string, force bool) (string, error) {
	if path == "" {
		return "", errors.New("no path given: give a new path or an existing regular file")
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return path, checkParent(path)
	}
	if err != nil {
		return "", err
	}
	dst := path
	if fi.Mode()&fs.ModeSymlink != 0 {
		if dst, err = filepath.EvalSymlinks(path); errors.Is(err, fs.ErrNotExist) {
			link, _ := os.Readlink(path)
			return "", &TypeError{Path: path, Is: "a symbolic link to " + link + ", which does not exist", Want: wantOutput}
		} else if err != nil {
			return "", err
		}
		if fi, err = os.Lstat(dst); err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() {
			e := wrongType(path, fi.Mode(), wantOutput)
			e.Is = "a symbolic link to " + dst + ", which is " + e.Is
			return "", e
		}
	}
	if !fi.Mode().IsRegular() {
		return "", wrongType(path, fi.Mode(), wantOutput)
	}
	if !force {
		return "", existsError(path)
	}
	return dst, nil
}

// checkParent says so when the folder that would hold path is missing or
// is not a folder.
func checkParent(path string) error {
	dir := filepath.Dir(path)
	err := CheckFolder(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return missingFolderError(dir)
	}
	return err
}

// existsError is the refusal of an output path that exists; it is
// fs.ErrExist.
type existsError string

func (e existsError) Error() string {
	return string(e) + " already exists: pass --force to replace it, or give a new path"
}

func (e existsError) Is(target error) bool { return target == fs.ErrExist }

// missingFolderError is the refusal of an output path whose folder does
// not exist; it is fs.ErrNotExist.
type missingFolderError string

func (e missingFolderError) Error() string {
	return "folder " + string(e) + " does not exist: make it first (mkdir -p " + string(e) + "), or give a path in a folder that exists"
}

func (e missingFolderError) Is(target error) bool { return target == fs.ErrNotExist }

// temporaries are the temporary files of the outputs neither committed
// nor aborted.
var temporaries struct {
	sync.Mutex
	names map[string]bool
}

func track(name string, live bool) {
	temporaries.Lock()
	defer temporaries.Unlock()
	if temporaries.names == nil {
		temporaries.names = map[string]bool{}
	}
	if live {
		temporaries.names[name] = true
	} else {
		delete(temporaries.names, name)
	}
}

// TempFolder makes a new folder in dir, named by pattern as os.MkdirTemp
// names it, for work that is removed when done: call remove then. Until
// remove, RemoveTemporaries removes it too, so a process made to exit
// mid-work leaves no folder behind.
func TempFolder(dir, pattern string) (path string, remove func(), err error) {
	path, err = os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", nil, err
	}
	track(path, true)
	return path, func() {
		os.RemoveAll(path)
		track(path, false)
	}, nil
}

// RemoveTemporaries removes the temporary file of every output neither
// committed nor aborted, for a process made to exit before its deferred
// Aborts run (a second interrupt, or one not heeded in time).
func RemoveTemporaries() {
	temporaries.Lock()
	defer temporaries.Unlock()
	for name := range temporaries.names {
		os.RemoveAll(name)
	}
	clear(temporaries.names)
}
