package catalog

import (
	"errors"
	"fmt"
	"io"
)

// ErrSizeMismatch is wrapped by CheckBytes's error for bytes that end
// before or after the blob does.
var ErrSizeMismatch = errors.New("catalog: size differs from the manifest's")

// CheckBytes reads r to its end and checks that it is exactly the blob m
// describes: each chunk's bytes against its check hash (a zero chunk as
// zeros), and the size. It is how a copy kept outside the catalog (an
// unpacked bundle in a node's cache) is verified before it is used
// again. A chunk that differs is a *ChunkError wrapping a
// *HashMismatchError.
func (m *Manifest) CheckBytes(r io.Reader) error {
	buf := make([]byte, m.ChunkSize)
	for i, ch := range m.Chunks {
		data := buf[:ch.Length]
		n, err := io.ReadFull(r, data)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read at offset %d: %w", ch.Offset+int64(n), err)
		}
		if err != nil {
			return fmt.Errorf("%d bytes, want %d: %w", ch.Offset+int64(n), m.Size, ErrSizeMismatch)
		}
		if got := CheckSum(data); ch.Zero && !IsZero(data) || !ch.Zero && got != ch.Check {
			want := ch.Check
			if ch.Zero {
				want = "zeros"
			}
			return &ChunkError{Index: i, Offset: ch.Offset, ID: ch.ID, Err: &HashMismatchError{Got: got, Want: want}}
		}
	}
	if n, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read at offset %d: %w", m.Size+n, err)
	} else if n > 0 {
		return fmt.Errorf("%d bytes more than the %d of the image: %w", n, m.Size, ErrSizeMismatch)
	}
	return nil
}
