package catalog

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/storage"
)

// Image is one manifest of a name as the refs show it: its version, if a
// version points at it, and the channels that point at it.
type Image struct {
	Name     string    `json:"name"`
	Version  string    `json:"version,omitempty"`
	Channels []string  `json:"channels,omitempty"`
	Digest   string    `json:"digest"`
	Manifest *Manifest `json:"-"`
}

type refEntry struct{ tag, key string }

func (img Image) refs() []refEntry {
	var out []refEntry
	if img.Version != "" {
		out = append(out, refEntry{img.Version, versionKey(img.Name, img.Version)})
	}
	for _, ch := range img.Channels {
		out = append(out, refEntry{ch, channelKey(img.Name, ch)})
	}
	return out
}

// List returns the catalog's images, or those of one name, sorted by name
// and then by creation time, with their manifests read and verified.
func (c *Catalog) List(ctx context.Context, name string) ([]Image, error) {
	images, err := c.Refs(ctx, name)
	if err != nil {
		return nil, err
	}
	for i := range images {
		if images[i].Manifest, err = c.ManifestByDigest(ctx, images[i].Digest); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(images, func(a, b Image) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), a.Manifest.Created.Compare(b.Manifest.Created), cmp.Compare(a.Digest, b.Digest))
	})
	return images, nil
}

// Refs returns what the catalog's refs, or those of one name, point at:
// its images as List does, but without reading their manifests (Manifest
// is nil), sorted by name and digest. A ref to a missing manifest is
// listed like any other.
func (c *Catalog) Refs(ctx context.Context, name string) ([]Image, error) {
	prefix := "refs/"
	if name != "" {
		if err := ident.ImageName(name); err != nil {
			return nil, err
		}
		prefix += name + "/"
	}
	byDigest := map[[2]string]*Image{}
	err := c.store.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		name, tag, kind, ok := parseRefKey(oi.Key)
		if !ok {
			return nil // a claim
		}
		digest, err := c.readRef(ctx, oi.Key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // removed while we listed
		} else if err != nil {
			return err
		}
		img := byDigest[[2]string{name, digest}]
		if img == nil {
			img = &Image{Name: name, Digest: digest}
			byDigest[[2]string{name, digest}] = img
		}
		if kind == kindVersion {
			img.Version = tag
		} else {
			img.Channels = append(img.Channels, tag)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	images := make([]Image, 0, len(byDigest))
	for _, img := range byDigest {
		slices.Sort(img.Channels)
		images = append(images, *img)
	}
	slices.SortFunc(images, func(a, b Image) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Digest, b.Digest))
	})
	return images, nil
}
