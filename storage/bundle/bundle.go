package bundle

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// ErrNotBundle is wrapped by Extract's errors for an archive that is not a
// bundle: not a tar, or holding something other than folders and files,
// or a path that leaves the folder.
var ErrNotBundle = errors.New("bundle: not a folder bundle")

// Fixed entry metadata, so that only paths and contents make the bytes.
const (
	dirMode  = 0o755
	fileMode = 0o644
)

var epoch = time.Unix(0, 0)

// Write writes the folder dir to w as a bundle. A file that changes size
// while it is read fails the write.
func Write(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: dirMode, ModTime: epoch})
		case d.Type().IsRegular():
			return writeFile(tw, p, name)
		default:
			return fmt.Errorf("%s is %s; a bundle holds only folders and regular files", name, userpath.Describe(d.Type()))
		}
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	return nil
}

func writeFile(tw *tar.Writer, p, name string) error {
	f, err := userpath.Open(p) // never waits on a file swapped for a FIFO
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: fileMode, ModTime: epoch}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, size); err != nil {
		return fmt.Errorf("%s: %w (did it change while it was read?)", name, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("%s grew while it was read", name)
	}
	return nil
}

// Extract unpacks the bundle that src writes into the folder dir, which
// must not exist yet. dir appears only once the archive is complete and src
// has returned without error; until then the files are in a hidden folder
// beside it, removed on failure. src is typically a catalog pull, so every
// byte unpacked has been verified.
func Extract(dir string, src func(w io.Writer) error) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("extract to %s: %w; unpack into a new folder", dir, fs.ErrExist)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".extract-")
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer os.RemoveAll(tmp)
	pr, pw := io.Pipe()
	srcErr := make(chan error, 1)
	go func() {
		err := src(pw)
		pw.CloseWithError(err)
		srcErr <- err
	}()
	err = unpack(pr, tmp)
	if err == nil {
		_, err = io.Copy(io.Discard, pr) // let src finish, and hear its error
	}
	pr.CloseWithError(err)
	// A failing src also fails the unpacking; its own error says why.
	if serr := <-srcErr; serr != nil && (err == nil || !errors.Is(serr, err)) {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("extract to %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, dirMode); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func unpack(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotBundle, err)
		}
		name := path.Clean(hdr.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%w: entry %q leaves the folder", ErrNotBundle, hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, dirMode)
		case tar.TypeReg:
			err = unpackFile(tr, target)
		default:
			return fmt.Errorf("%w: entry %q has tar type %q; a bundle holds only folders and regular files", ErrNotBundle, hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

func unpackFile(r io.Reader, target string) error {
	if err := os.MkdirAll(filepath.Dir(target), dirMode); err != nil {
		return err
	}
	// O_EXCL: an archive naming a file twice is refused, not merged.
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
