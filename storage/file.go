package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// tmpDir holds objects being written; it is not part of the key space.
const tmpDir = ".tmp"

// FileStore keeps objects as files below a root directory. It is the
// embedded default of the dev farm and needs nothing but a file system.
// Only writes create anything: the root and tmpDir are made by the first
// write, so reading a store (or a folder that is none) changes nothing.
type FileStore struct {
	root string
}

// NewFileStore returns a store rooted at dir, which must be a folder or
// not exist yet (a store nothing was written to is empty).
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: file store needs an absolute path, got %q", ErrBadURL, dir)
	}
	if err := userpath.CheckFolder(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: file store: %v", ErrBadURL, err)
	}
	return &FileStore{root: filepath.Clean(dir)}, nil
}

func (s *FileStore) String() string { return "file://" + s.root }

func (s *FileStore) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Open implements Store.
func (s *FileStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, s.fail("open", key, err)
	}
	if n < 0 {
		n = 1<<63 - 1 - off
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, n), f}, nil
}

// Put implements Store: it writes a temporary file and renames it into place.
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.place(ctx, key, r, size, os.Rename)
}

// Create implements Store: a hard link, unlike a rename, fails if the
// target exists, atomically.
func (s *FileStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	err := s.place(ctx, key, r, size, os.Link)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s in %s: %w", key, s, ErrExists)
	}
	return err
}

// place writes a temporary file, syncs it and moves it to key with move.
func (s *FileStore) place(ctx context.Context, key string, r io.Reader, size int64, move func(old, new string) error) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	tmp, err := s.createTemp()
	if err != nil {
		return s.fail("put", key, err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, contextReader{ctx, r})
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	if err == nil {
		err = ctx.Err() // a sync can take long: not for a write nobody waits for
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(p), 0o755)
	}
	if err == nil {
		err = move(tmp.Name(), p)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	return s.fail("put", key, err)
}

// createTemp makes a file in tmpDir, making tmpDir (and the root) first
// if this is the store's first write.
func (s *FileStore) createTemp() (*os.File, error) {
	dir := filepath.Join(s.root, tmpDir)
	f, err := os.CreateTemp(dir, "put-")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			f, err = os.CreateTemp(dir, "put-")
		}
	}
	return f, err
}

// contextReader ends a copy from r once ctx is done, so that a write in
// progress stops when its caller is interrupted.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p[:min(len(p), 1<<20)])
}

// Stat implements Store.
func (s *FileStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, s.fail("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Touch implements Store.
func (s *FileStore) Touch(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	now := time.Now()
	return s.fail("touch", key, os.Chtimes(p, now, now))
}

// Delete implements Store.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.fail("delete", key, err)
	}
	return nil
}

// List implements Store.
func (s *FileStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	// Walk the deepest directory the prefix names in full.
	dir := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if key == tmpDir {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed while we walked
		}
		return fn(ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	return err
}

func (s *FileStore) fail(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s in %s: %w", op, key, s, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s in %s: %w: %v", op, key, s, ErrAccessDenied, err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, key, s, err)
}

// checkPrefix accepts "" or a key, optionally ending in "/".
func checkPrefix(prefix string) error {
	if p := strings.TrimSuffix(prefix, "/"); p != "" {
		return CheckKey(p)
	}
	return nil
}
