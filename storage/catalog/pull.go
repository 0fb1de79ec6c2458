package catalog

import (
	"context"
	"fmt"
	"io"

	"github.com/imagefarm/imagefarm/internal/userpath"
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
// holes. The file appears at path only once complete and synced; path must
// not exist yet (userpath.Create).
func (c *Catalog) PullFile(ctx context.Context, m *Manifest, path string, progress func(int64)) error {
	out, err := userpath.Create(path, userpath.Options{})
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	defer out.Abort()
	if err := c.PullInto(ctx, m, out, progress); err != nil {
		return fmt.Errorf("pull to %s: %w", path, err)
	}
	return out.Commit()
}

// FileWriter is what PullInto writes: a new, empty file.
type FileWriter interface {
	io.WriterAt
	Truncate(size int64) error
}

// PullInto writes the blob to the empty file w at the chunks' offsets,
// leaving zero chunks as holes, and sets its size.
func (c *Catalog) PullInto(ctx context.Context, m *Manifest, w FileWriter, progress func(int64)) error {
	err := c.Stream(ctx, m, func(ch Chunk, data []byte) error {
		if data != nil {
			if _, err := w.WriteAt(data, ch.Offset); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(ch.Length)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return w.Truncate(m.Size)
}
