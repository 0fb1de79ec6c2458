package catalog

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Pull writes the blob to w in order, zero chunks as zeros.
func (c *Catalog) Pull(ctx context.Context, m *Manifest, w io.Writer, progress func(int64)) error {
	return c.Stream(ctx, m, func(ch Chunk, data []byte) error {
		var err error
		if data != nil {
			_, err = w.Write(data)
		} else {
			err = writeZeros(w, ch.Length)
		}
		if err == nil && progress != nil {
			progress(ch.Length)
		}
		return err
	})
}

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroBlock)))
		if _, err := w.Write(zeroBlock[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// PullFile writes the blob to a new file at path, leaving zero chunks as
// holes. The file appears at path only once complete and synced.
func (c *Catalog) PullFile(ctx context.Context, m *Manifest, path string, progress func(int64)) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".pull-")
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	err = c.Stream(ctx, m, func(ch Chunk, data []byte) error {
		if data != nil {
			if _, err := tmp.WriteAt(data, ch.Offset); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(ch.Length)
		}
		return nil
	})
	if err == nil {
		err = tmp.Truncate(m.Size)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("pull to %s: %w", path, err)
	}
	return nil
}
