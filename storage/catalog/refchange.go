package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/storage"
)

// RefWriter changes what the catalog's refs and signatures say. The
// Catalog is one, writing its store; the imagefarm CLI has another that
// asks the controller, which checks the caller's role, writes the store
// and records the change in its audit trail. A push uploads chunks and
// its manifest itself and then commits through a RefWriter.
type RefWriter interface {
	// AddSignature stores sig, key's signature of the image named digest.
	AddSignature(ctx context.Context, digest string, key PublicKey, sig []byte) error
	// CreateVersion points name:version, once and for good, at digest,
	// the manifest of name:version.
	CreateVersion(ctx context.Context, name, version, digest string) error
	// SetChannel points name:channel at digest, an image of name, moving
	// the channel if it exists.
	SetChannel(ctx context.Context, name, channel, digest string) error
}

// RefTarget is a version or channel ref and the digest it points at.
type RefTarget struct {
	Ref    Ref
	Digest string
}

// CreateVersion points name:version at digest, which must be the manifest
// of name:version, only if the version does not exist (ErrVersionExists)
// and is not the name of a channel of name (ErrNameTaken): of several
// writers racing for one version, one wins.
func (c *Catalog) CreateVersion(ctx context.Context, name, version, digest string) error {
	m, err := c.imageOf(ctx, name, digest)
	if err != nil {
		return err
	}
	if m.Version != version {
		return fmt.Errorf("%w: %s is the image %s:%s, not %s:%s; a version points only at its own manifest", ErrBadRef, digest, m.Name, m.Version, name, version)
	}
	if err := c.claim(ctx, name, version, kindVersion); err != nil {
		return err
	}
	err = c.writeRef(ctx, versionKey(name, version), digest, true)
	if errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("%w: %s:%s was pushed by someone else meanwhile; push a new version", ErrVersionExists, name, version)
	}
	if err != nil {
		return fmt.Errorf("create %s:%s: %w", name, version, err)
	}
	return nil
}

// SetChannel points name:channel at digest, an image of name, moving it
// if it exists. A channel may not share its name with a version of the
// same image (ErrNameTaken).
func (c *Catalog) SetChannel(ctx context.Context, name, channel, digest string) error {
	if err := ident.Channel(channel); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRef, err)
	}
	if _, err := c.imageOf(ctx, name, digest); err != nil {
		return err
	}
	if err := c.claim(ctx, name, channel, kindChannel); err != nil {
		return err
	}
	if err := c.writeRef(ctx, channelKey(name, channel), digest, false); err != nil {
		return fmt.Errorf("set %s:%s: %w", name, channel, err)
	}
	return nil
}

// imageOf returns the manifest named digest, which must be an image of name.
func (c *Catalog) imageOf(ctx context.Context, name, digest string) (*Manifest, error) {
	m, err := c.ManifestByDigest(ctx, digest)
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("%w: %s is the image %s:%s; a ref of %s points only at images of %s", ErrBadRef, digest, m.Name, m.Version, name, name)
	}
	return m, nil
}

// writeRef points key at digest; with create, only if key does not exist.
func (c *Catalog) writeRef(ctx context.Context, key, digest string, create bool) error {
	data := []byte(digest + "\n")
	if create {
		return c.store.Create(ctx, key, bytes.NewReader(data), int64(len(data)))
	}
	return c.store.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
}

// Remove deletes a version or channel ref, or with a digest every ref of
// the name that points at it, and returns the refs removed, sorted.
// Chunks and manifests are left for GC, and the names removed stay the
// kind they were (see claim).
func (c *Catalog) Remove(ctx context.Context, ref Ref) ([]RefTarget, error) {
	images, err := c.Refs(ctx, ref.Name) // not List: a ref to a missing manifest can be removed too
	if err != nil {
		return nil, err
	}
	var removed []RefTarget
	for _, img := range images {
		for _, r := range img.refs() {
			if ref.Digest == img.Digest || (ref.Digest == "" && r.tag == ref.Tag) {
				if err := c.store.Delete(ctx, r.key); err != nil {
					return removed, fmt.Errorf("remove %s:%s: %w", ref.Name, r.tag, err)
				}
				removed = append(removed, RefTarget{Ref: Ref{Name: ref.Name, Tag: r.tag}, Digest: img.Digest})
			}
		}
	}
	if len(removed) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	slices.SortFunc(removed, func(a, b RefTarget) int { return strings.Compare(a.Ref.Tag, b.Ref.Tag) })
	return removed, nil
}
