package catalog

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// ReaderAt reads the blob m describes at any offset, fetching (and
// checking) only the chunks a read touches, through the node cache when
// there is one: a disk image's partition table is read this way without
// fetching the image. Its reads use ctx.
func (c *Catalog) ReaderAt(ctx context.Context, m *Manifest) io.ReaderAt {
	return readerAtFunc(func(p []byte, off int64) (int, error) { return c.readAt(ctx, m, p, off) })
}

// readerAtFunc is a function as an io.ReaderAt.
type readerAtFunc func(p []byte, off int64) (int, error)

func (fn readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return fn(p, off) }

// readAt reads len(p) bytes of m's blob from off; past the blob's end it
// returns io.EOF with what it read, as io.ReaderAt does.
func (c *Catalog) readAt(ctx context.Context, m *Manifest, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at offset %d: negative offset", m.Name, off)
	}
	n := 0
	for n < len(p) && off+int64(n) < m.Size {
		at := off + int64(n)
		i := sort.Search(len(m.Chunks), func(i int) bool { return m.Chunks[i].Offset+m.Chunks[i].Length > at })
		data, err := c.ReadChunk(ctx, m, i, nil)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[at-m.Chunks[i].Offset:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
