package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/storage"
)

// Errors about refs.
var (
	ErrNotFound      = errors.New("catalog: image not found")
	ErrVersionExists = errors.New("catalog: version already exists")
)

// Catalog is the image catalog kept in one store.
type Catalog struct {
	store       storage.Store
	codec       *codec
	concurrency int
	compressed  sync.Pool // *[]byte download buffers for compressed chunks
	cache       *Cache    // nil: every chunk comes from the store
	flight      singleflight.Group
	retryBudget time.Duration
}

// Options tune New. The zero value is ready to use.
type Options struct {
	// Cache, if set, keeps downloaded chunks on local disk for every stream
	// of this catalog (an imager's node cache).
	Cache *Cache
	// RetryBudget is how long reading a chunk keeps being retried once the
	// store has failed it (connections lost or refused, server errors),
	// before the read fails with ErrStorageUnavailable. 0 means
	// DefaultRetryBudget.
	RetryBudget time.Duration
}

// DefaultRetryBudget rides out a storage restart or a network blip.
const DefaultRetryBudget = 2 * time.Minute

// New returns the catalog kept in store.
func New(store storage.Store, opts Options) (*Catalog, error) {
	n := max(4, 2*runtime.GOMAXPROCS(0))
	cd, err := newCodec(runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	c := &Catalog{store: store, codec: cd, concurrency: n, cache: opts.Cache, retryBudget: opts.RetryBudget}
	if c.retryBudget <= 0 {
		c.retryBudget = DefaultRetryBudget
	}
	c.compressed.New = func() any { return new([]byte) }
	return c, nil
}

// memoryBudget bounds the chunk buffers one push or stream keeps in
// flight (about two chunks' worth each: the data and its compressed form),
// so that memory stays bounded whatever the chunk size, not only whatever
// the image size.
const memoryBudget = 96 << 20

// window is how many chunks of chunkSize bytes a push or stream handles at
// once: the catalog's concurrency, fewer for chunks so large that the
// memory budget would not hold them, and at least one.
func (c *Catalog) window(chunkSize int64) int {
	return max(1, min(c.concurrency, int(memoryBudget/(2*max(chunkSize, 1)))))
}

// Store is the store the catalog lives in.
func (c *Catalog) Store() storage.Store { return c.store }

// Cache is the node cache chunks are kept in, or nil.
func (c *Catalog) Cache() *Cache { return c.cache }

// Resolve returns the digest ref names: a version, else a channel, else
// the digest itself once its manifest is known to exist.
func (c *Catalog) Resolve(ctx context.Context, ref Ref) (string, error) {
	if ref.Digest != "" {
		if _, err := c.store.Stat(ctx, manifestKey(ref.Digest)); err != nil {
			return "", c.notFound(ref, err)
		}
		return ref.Digest, nil
	}
	d, err := c.readRef(ctx, versionKey(ref.Name, ref.Tag))
	if errors.Is(err, storage.ErrNotFound) {
		d, err = c.readRef(ctx, channelKey(ref.Name, ref.Tag))
	}
	if err != nil {
		return "", c.notFound(ref, err)
	}
	return d, nil
}

func (c *Catalog) notFound(ref Ref, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s (list images with `imagefarm image ls`)", ErrNotFound, ref)
	}
	return fmt.Errorf("resolve %s: %w", ref, err)
}

// Manifest resolves ref and returns its manifest and digest.
func (c *Catalog) Manifest(ctx context.Context, ref Ref) (*Manifest, string, error) {
	d, err := c.Resolve(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	m, err := c.ManifestByDigest(ctx, d)
	return m, d, err
}

// ManifestByDigest reads, verifies and decodes the manifest named digest.
func (c *Catalog) ManifestByDigest(ctx context.Context, digest string) (*Manifest, error) {
	if err := ident.Digest(digest); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	// Retried like a chunk: an imager starting a task while storage is
	// away waits for it as long as its downloads would.
	var data []byte
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		data, err = c.readSmall(ctx, manifestKey(digest), maxManifestBytes)
		return err
	})
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("%w: manifest %s", ErrNotFound, digest)
		}
		return nil, fmt.Errorf("read manifest %s: %w", digest, err)
	}
	return DecodeManifest(data, digest)
}

func (c *Catalog) readRef(ctx context.Context, key string) (string, error) {
	data, err := c.readSmall(ctx, key, 128)
	if err != nil {
		return "", err
	}
	d := strings.TrimSpace(string(data))
	if err := ident.Digest(d); err != nil {
		return "", fmt.Errorf("ref %s: %w", key, err)
	}
	return d, nil
}

func (c *Catalog) readSmall(ctx context.Context, key string, limit int64) ([]byte, error) {
	rc, err := c.store.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", key, limit)
	}
	return data, err
}
