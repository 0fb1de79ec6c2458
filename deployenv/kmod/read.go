package kmod

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// maxModule bounds a decompressed module: the largest in a Debian
// kernel is under 20 MiB, so more is a broken or hostile file.
const maxModule = 256 << 20

// Read returns the uncompressed bytes of the module file (a path from
// Resolve's Modules) in the tree. u-root's kmodule.CompressionReader
// does the same dispatch but never closes its zstd decoder, whose
// goroutines would outlive every call.
func (t *Tree) Read(file string) ([]byte, error) {
	f, err := os.Open(filepath.Join(t.dir, file))
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	defer f.Close()
	var r io.Reader
	switch {
	case strings.HasSuffix(file, ".ko"):
		r = f
	case strings.HasSuffix(file, ".ko.xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("read module %s: %w", file, err)
		}
	case strings.HasSuffix(file, ".ko.zst"):
		d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("read module %s: %w", file, err)
		}
		defer d.Close()
		r = d
	case strings.HasSuffix(file, ".ko.gz"):
		if r, err = gzip.NewReader(f); err != nil {
			return nil, fmt.Errorf("read module %s: %w", file, err)
		}
	default:
		return nil, fmt.Errorf("read module %s: not .ko, .ko.xz, .ko.zst or .ko.gz", file)
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(r, maxModule+1)); err != nil {
		return nil, fmt.Errorf("read module %s: %w", file, err)
	}
	if b.Len() > maxModule {
		return nil, fmt.Errorf("read module %s: more than %d MiB uncompressed", file, maxModule>>20)
	}
	return b.Bytes(), nil
}
