package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/storage"
)

// ErrNameTaken is returned for a version named like a channel of the same
// image, or a channel named like a version: NAME:TAG must resolve to one
// thing, so a name is a version or a channel, never both.
var ErrNameTaken = errors.New("catalog: name taken")

// tagKind is what a tag of an image is: a version or a channel.
type tagKind string

const (
	kindVersion tagKind = "version"
	kindChannel tagKind = "channel"
)

// A tag is claimed for one kind before its ref is first written: the
// object refs/NAME/claims/TAG, holding the kind, is made with Create, so
// that of two writers racing to make NAME:TAG a version and a channel
// exactly one wins, whatever store and however many processes. A claim is
// for good: removing the ref leaves it, since the store cannot delete it
// only if no one relies on it meanwhile (a re-push of a removed version is
// still a version). A tag whose ref was written before claims existed has
// no claim: its ref says what it is, and writers go by that (see kindOf).

func claimKey(name, tag string) string { return "refs/" + name + "/claims/" + tag }

// refKey is the key of name:tag as a ref of kind.
func refKey(name, tag string, kind tagKind) string {
	if kind == kindVersion {
		return versionKey(name, tag)
	}
	return channelKey(name, tag)
}

// parseRefKey splits a version or channel ref's key; ok is false for any
// other key under refs/ (a claim).
func parseRefKey(key string) (name, tag string, kind tagKind, ok bool) {
	parts := strings.Split(key, "/") // refs/NAME/{versions,channels}/TAG
	if len(parts) != 4 || parts[0] != "refs" {
		return "", "", "", false
	}
	switch parts[2] {
	case "versions":
		return parts[1], parts[3], kindVersion, true
	case "channels":
		return parts[1], parts[3], kindChannel, true
	}
	return "", "", "", false
}

// claim makes sure name:tag is a tag of kind want, claiming it if it is
// nothing yet; it fails with ErrNameTaken if it is of the other kind.
func (c *Catalog) claim(ctx context.Context, name, tag string, want tagKind) error {
	kind, err := c.kindOf(ctx, name, tag)
	if err != nil {
		return err
	}
	if kind == "" {
		data := string(want) + "\n"
		err := c.store.Create(ctx, claimKey(name, tag), strings.NewReader(data), int64(len(data)))
		switch {
		case errors.Is(err, storage.ErrExists): // claimed by another writer meanwhile
			if kind, err = c.readClaim(ctx, name, tag); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("claim %s:%s as a %s: %w", name, tag, want, err)
		default:
			kind = want
		}
	}
	return c.taken(ctx, name, tag, kind, want)
}

// checkFree is claim without claiming: it fails with ErrNameTaken if
// name:tag is of the other kind than want now.
func (c *Catalog) checkFree(ctx context.Context, name, tag string, want tagKind) error {
	kind, err := c.kindOf(ctx, name, tag)
	if err != nil {
		return err
	}
	return c.taken(ctx, name, tag, kind, want)
}

// taken is the error for name:tag being a kind, when want is asked for.
func (c *Catalog) taken(ctx context.Context, name, tag string, kind, want tagKind) error {
	if kind == "" || kind == want {
		return nil
	}
	is := "is"
	if _, err := c.store.Stat(ctx, refKey(name, tag, kind)); errors.Is(err, storage.ErrNotFound) {
		is = "was" // removed since
	}
	return fmt.Errorf("%w: %s:%s %s a %s, so it cannot be a %s: give the %s another name (NAME:TAG names one image, so a name stays a version or a channel, even once removed)",
		ErrNameTaken, name, tag, is, kind, want, want)
}

// kindOf says what name:tag is: its claim, or, for a tag never claimed,
// the kind of a ref written before claims existed; "" when it is nothing.
// Such refs are never written any more, so a writer that finds none here
// finds none later.
func (c *Catalog) kindOf(ctx context.Context, name, tag string) (tagKind, error) {
	kind, err := c.readClaim(ctx, name, tag)
	if !errors.Is(err, storage.ErrNotFound) {
		return kind, err
	}
	for _, k := range []tagKind{kindVersion, kindChannel} {
		_, err := c.store.Stat(ctx, refKey(name, tag, k))
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return "", fmt.Errorf("look up %s:%s: %w", name, tag, err)
		}
	}
	return "", nil
}

// readClaim reads name:tag's claim; storage.ErrNotFound if there is none.
func (c *Catalog) readClaim(ctx context.Context, name, tag string) (tagKind, error) {
	data, err := c.readSmall(ctx, claimKey(name, tag), 16)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
		return "", fmt.Errorf("read the claim of %s:%s: %w", name, tag, err)
	}
	switch k := tagKind(strings.TrimSpace(string(data))); k {
	case kindVersion, kindChannel:
		return k, nil
	}
	return "", fmt.Errorf("claim %s holds %q, not %q or %q: restore it or remove it by hand", claimKey(name, tag), data, kindVersion, kindChannel)
}
