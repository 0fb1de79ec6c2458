package wim

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// utf16Reader turns UTF-16LE into UTF-8 as it is read, so that the XML
// resource is never held in memory whole. Unpaired surrogates become
// U+FFFD, as in utf16.Decode.
type utf16Reader struct {
	src *bufio.Reader
	// err is the first error from src other than the end of the data; it
	// tells a failing reader apart from malformed XML.
	err     error
	pending []byte // UTF-8 of the last rune, not yet returned
	buf     [utf8.UTFMax]byte
}

// Read fills p with UTF-8.
func (u *utf16Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(u.pending) == 0 {
			r, err := u.next()
			if err != nil {
				return n, err
			}
			u.pending = utf8.AppendRune(u.buf[:0], r)
		}
		c := copy(p[n:], u.pending)
		u.pending = u.pending[c:]
		n += c
	}
	return n, nil
}

// next decodes one rune, joining a surrogate pair.
func (u *utf16Reader) next() (rune, error) {
	var b [2]byte
	if _, err := io.ReadFull(u.src, b[:]); err != nil {
		return 0, u.fail(err)
	}
	r := rune(binary.LittleEndian.Uint16(b[:]))
	if !utf16.IsSurrogate(r) {
		return r, nil
	}
	low, err := u.src.Peek(2)
	if err != nil && !atEnd(err) {
		return 0, u.fail(err)
	}
	pair := unicode.ReplacementChar // unless a low surrogate follows
	if len(low) == 2 {
		pair = utf16.DecodeRune(r, rune(binary.LittleEndian.Uint16(low)))
	}
	if pair != unicode.ReplacementChar {
		u.src.Discard(2)
	}
	return pair, nil
}

// fail records err unless it only marks the end of the data, and returns
// it.
func (u *utf16Reader) fail(err error) error {
	if u.err == nil && !atEnd(err) {
		u.err = err
	}
	return err
}

// atEnd reports whether err only marks the end of the data.
func atEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
