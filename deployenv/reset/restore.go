package reset

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// restoreKeep applies the keep capture (its tree under keepRoot) beside
// the image, then moves it into place through a read-write ntfs-3g mount:
// a rename inside the volume keeps every NTFS attribute the capture brought
// back. An empty keep-list (a refresh) restores nothing.
func restoreKeep(ctx context.Context, dev, keepWIM, scratch string) error {
	if _, err := tool(ctx, nil, "wimlib-imagex", "apply", keepWIM, "1", dev); err != nil {
		return fmt.Errorf("apply the keep-list: %w", err)
	}
	return onMount(ctx, dev, scratch, func(root string) error {
		src := filepath.Join(root, keepRoot)
		if err := merge(src, root); err != nil {
			return fmt.Errorf("put back the keep-list: %w", err)
		}
		return os.Remove(src)
	})
}

// stage copies the stage folders onto the volume, returning the files
// copied.
func stage(ctx context.Context, dev string, folders []string, scratch string) (int, error) {
	if len(folders) == 0 {
		return 0, nil
	}
	n := 0
	err := onMount(ctx, dev, scratch, func(root string) error {
		for _, s := range folders {
			c, err := copyTree(s, root)
			n += c
			if err != nil {
				return fmt.Errorf("stage %s: %w", s, err)
			}
		}
		return nil
	})
	return n, err
}

// onMount mounts dev read-write, calls do on its root and unmounts.
func onMount(ctx context.Context, dev, scratch string, do func(root string) error) error {
	m, err := mountNTFS(ctx, dev, scratch, true)
	if err != nil {
		return fmt.Errorf("mount the new volume: %w", err)
	}
	err = do(m.dir)
	if uerr := m.unmount(); err == nil {
		err = uerr
	}
	return err
}

// merge moves the entries of folder src into folder dst: an entry dst does
// not have is renamed in whole; a folder both have is merged; a file
// replaces dst's. Names match without regard to case, as Windows reads them.
func merge(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		from := filepath.Join(src, e.Name())
		to, exists, err := lookupFold(dst, e.Name())
		if err != nil {
			return err
		}
		switch {
		case exists && e.IsDir() && isDir(to):
			if err := merge(from, to); err != nil {
				return err
			}
			if err := os.Remove(from); err != nil {
				return err
			}
			continue
		case exists:
			if err := os.RemoveAll(to); err != nil {
				return err
			}
		}
		if err := os.Rename(from, filepath.Join(dst, filepath.Base(to))); err != nil {
			return err
		}
	}
	return nil
}

// lookupFold finds name in dir without regard to case; when it is not
// there, the path it would have.
func lookupFold(dir, name string) (string, bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false, err
	}
	for _, e := range entries {
		if strings.EqualFold(e.Name(), name) {
			return filepath.Join(dir, e.Name()), true, nil
		}
	}
	return filepath.Join(dir, name), false, nil
}

func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

// copyTree copies the folders and regular files of src onto dst, names
// matched without regard to case; a link in src is refused. It returns
// the files copied.
func copyTree(src, dst string) (int, error) {
	n := 0
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		to, err := foldPath(dst, rel)
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(to, 0o755)
		case e.Type().IsRegular():
			n++
			_, _, err := copyFile(p, to)
			return err
		}
		return fmt.Errorf("%w: %s is not a folder or a regular file", ErrBadInput, p)
	})
	return n, err
}

// foldPath is rel under root, each existing element spelled as on disk.
func foldPath(root, rel string) (string, error) {
	p := root
	for _, e := range strings.Split(rel, string(filepath.Separator)) {
		next, _, err := lookupFold(p, e)
		if errors.Is(err, fs.ErrNotExist) {
			next = filepath.Join(p, e)
		} else if err != nil {
			return "", err
		}
		p = next
	}
	return p, nil
}
