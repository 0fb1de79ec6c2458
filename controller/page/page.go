package page

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// The sizes of a page.
const (
	// DefaultSize is a page's size when the request asks for 0.
	DefaultSize = 100
	// MaxSize is the largest page: a larger request gets this many, so that
	// one request cannot ask for everything.
	MaxSize = 1000
	// MaxTokenLen bounds a page token, so that a huge forged one is refused
	// before it is decoded. The keys the listings make are a few hundred
	// bytes at most (a 128-byte name, a time, a digest).
	MaxTokenLen = 1024
)

// Errors of a request's paging fields.
var (
	// ErrInvalidToken is returned for a page token no listing made.
	ErrInvalidToken = errors.New("page: invalid page token")
	// ErrInvalidSize is returned for a negative page size.
	ErrInvalidSize = errors.New("page: invalid page size")
)

// Order is how a listing sorts its items' keys.
type Order int

const (
	// Ascending lists the smallest key first.
	Ascending Order = iota + 1
	// Descending lists the largest key first.
	Descending
)

// Request is one page asked for, checked by Parse; the zero Request is
// the first page of DefaultSize.
type Request struct {
	size  int
	after string // the key of the previous page's last item; "" for the first page
}

// Parse checks a List request's page size and token. A size of 0 asks for
// DefaultSize, one above MaxSize gets MaxSize, and a negative one is
// ErrInvalidSize. A token is ErrInvalidToken when it is longer than
// MaxTokenLen, is not base64url, or names a key that valid refuses: a
// forged or mangled token is an error, not a listing that starts somewhere.
func Parse(size int, token string, valid func(key string) error) (Request, error) {
	if size < 0 {
		return Request{}, fmt.Errorf("page_size %d: use 0 for the default or up to %d: %w", size, MaxSize, ErrInvalidSize)
	}
	if size == 0 {
		size = DefaultSize
	}
	r := Request{size: min(size, MaxSize)}
	if token == "" {
		return r, nil
	}
	bad := fmt.Errorf("page token %s: pass the next_page_token of the previous response, or none for the first page: %w",
		ident.Quote(token), ErrInvalidToken)
	if len(token) > MaxTokenLen {
		return Request{}, bad
	}
	key, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(key) == 0 || valid(string(key)) != nil {
		return Request{}, bad
	}
	r.after = string(key)
	return r, nil
}

// Token is the page token of a page whose last item has key.
func Token(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// Cut returns r's page of items, which are sorted by key in order with
// no two keys equal, and the token of the next page, "" on the last one.
func Cut[T any](items []T, r Request, order Order, key func(T) string) ([]T, string) {
	start := 0
	if r.after != "" {
		start, _ = slices.BinarySearchFunc(items, r.after, func(item T, after string) int {
			if c := strings.Compare(key(item), after); c == 0 || (c < 0) == (order == Ascending) {
				return -1 // at or before the previous page's last item
			}
			return 1
		})
	}
	end := min(start+cmp.Or(r.size, DefaultSize), len(items))
	if end == len(items) {
		return items[start:], ""
	}
	return items[start:end], Token(key(items[end-1]))
}
