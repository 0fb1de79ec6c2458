package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/imagefarm/imagefarm/internal/redact"
)

// Errors returned by every Store. Callers test them with errors.Is.
var (
	ErrNotFound     = errors.New("storage: not found")
	ErrAccessDenied = errors.New("storage: access denied")
	ErrUnreachable  = errors.New("storage: unreachable")
	ErrNoBucket     = errors.New("storage: bucket does not exist")
	ErrInvalidKey   = errors.New("storage: invalid key")
	ErrBadURL       = errors.New("storage: bad store URL")
	ErrExists       = errors.New("storage: already exists")
)

// Store is a flat key space of objects. Keys are slash-separated relative
// paths made of printable characters with no empty, "." or ".." element.
type Store interface {
	// Open reads n bytes of key starting at off; n < 0 reads to the end.
	// Its io.EOF is always the real end of the object or range: a body cut
	// short by a lost connection fails the read with ErrUnreachable.
	Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// Put stores size bytes from r under key, replacing any object there.
	// Readers never see a partly written object.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Create is Put for a key that must not exist yet: of several creators
	// racing for one key, exactly one succeeds and the others get ErrExists.
	Create(ctx context.Context, key string, r io.Reader, size int64) error
	// Stat describes key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Touch sets key's modification time to now, so a garbage collector
	// with a grace period leaves it alone.
	Touch(ctx context.Context, key string) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, until fn
	// returns an error. The order is the backend's; callers sort if they care.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// String is the store's URL without secrets, for messages.
	String() string
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Options tune Open. The zero value is ready to use.
type Options struct {
	// CredentialsFile is an AWS shared credentials file for S3 stores, used
	// when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set. The URL's
	// credentials= parameter overrides it.
	CredentialsFile string
}

// Open returns the store named by rawURL:
//
//	file:///PATH                                   a local directory
//	s3://BUCKET/PREFIX?endpoint=HOST:PORT          S3 over TLS
//	   &insecure=true                              plain HTTP (MinIO in a lab)
//	   &region=R &profile=P &credentials=FILE      region, shared credentials
//	   &retries=N                                  attempts per request (default 5)
//
// A URL carries no credentials: one with user info is refused, and errors
// quote it without (redact.URL).
func Open(rawURL string, opts Options) (Store, error) {
	shown := redact.URL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL it quotes
		}
		return nil, fmt.Errorf("%w %q: %v", ErrBadURL, shown, err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w %q: a store URL carries no credentials; give S3 keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "+
			"or a shared credentials file with ?credentials=FILE", ErrBadURL, shown)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w %q: a file URL has three slashes: file:///path", ErrBadURL, shown)
		}
		return NewFileStore(u.Path)
	case "s3":
		return newS3FromURL(u, opts)
	default:
		return nil, fmt.Errorf("%w %q: use file:///PATH or s3://BUCKET/PREFIX?endpoint=HOST:PORT", ErrBadURL, shown)
	}
}

// CheckKey returns ErrInvalidKey, with the reason, for a key that could
// escape the store's key space or that an object store would mangle.
func CheckKey(key string) error {
	if key == "" || len(key) > 1024 {
		return fmt.Errorf("%w %q: empty or longer than 1024 bytes", ErrInvalidKey, key)
	}
	for _, r := range key {
		if r == '\\' || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w %q: contains %q", ErrInvalidKey, key, r)
		}
	}
	for _, elem := range strings.Split(key, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w %q: empty, \".\" or \"..\" path element", ErrInvalidKey, key)
		}
	}
	return nil
}
