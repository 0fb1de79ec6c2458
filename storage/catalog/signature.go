package catalog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/storage"
)

// Errors about signatures. An image with no signature at all is missing
// one; an image whose signatures are all by keys nobody trusts, do not
// verify, or were made for another image is invalid.
var (
	ErrSignatureMissing = errors.New("catalog: image is not signed")
	ErrSignatureInvalid = errors.New("catalog: image signature is not valid")
)

// statementType heads every signed statement, so that a signature over an
// imagefarm image can never be taken for one over anything else.
const statementType = "imagefarm-image-signature-v1"

// Statement is what a signature signs: a manifest digest bound to the
// image's name, version and creation time, so that a signature cannot be
// moved to another image or name.
type Statement struct {
	Digest  string    `json:"digest"`
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Created time.Time `json:"created"`
}

// StatementFor is the statement for manifest m named digest.
func StatementFor(m *Manifest, digest string) Statement {
	return Statement{Digest: digest, Name: m.Name, Version: m.Version, Created: m.Created.UTC()}
}

// Bytes is the canonical form that is signed: one "key value" line each,
// in this order, after the type line.
func (s Statement) Bytes() []byte {
	return fmt.Appendf(nil, "%s\ndigest %s\nname %s\nversion %s\ncreated %s\n",
		statementType, s.Digest, s.Name, s.Version, s.Created.UTC().Format(time.RFC3339Nano))
}

// Signature is one key's signature of an image, stored as JSON under
// signatures/sha256/<hex>/<key id>.
type Signature struct {
	KeyID     string    `json:"key_id"`
	Statement Statement `json:"statement"`
	Sig       []byte    `json:"sig"` // ed25519 over Statement.Bytes()
}

func signatureDir(digest string) string {
	return "signatures/sha256/" + strings.TrimPrefix(digest, "sha256:") + "/"
}

const maxSignatureBytes = 4096

// SignImage returns k's signature of the image m named digest, which
// AddSignature stores: the private key never leaves the signer.
func (k *SigningKey) SignImage(m *Manifest, digest string) []byte {
	return ed25519.Sign(k.priv, StatementFor(m, digest).Bytes())
}

// AddSignature stores sig, key's signature of the image named digest,
// beside its manifest, replacing an earlier one by the same key. It is
// stored only if it verifies against the manifest's statement, under key;
// ErrSignatureInvalid otherwise.
func (c *Catalog) AddSignature(ctx context.Context, digest string, key PublicKey, sig []byte) error {
	m, err := c.ManifestByDigest(ctx, digest)
	if err != nil {
		return err
	}
	st := StatementFor(m, digest)
	if len(key.Key) != ed25519.PublicKeySize || !ed25519.Verify(key.Key, st.Bytes(), sig) {
		return fmt.Errorf("%w: the signature does not verify under key %s against %s:%s (%s): sign the image's own statement with the key's private half",
			ErrSignatureInvalid, KeyID(key.Key), m.Name, m.Version, digest)
	}
	id := KeyID(key.Key)
	data, err := json.Marshal(Signature{KeyID: id, Statement: st, Sig: sig})
	if err != nil {
		return fmt.Errorf("sign %s:%s: %w", m.Name, m.Version, err)
	}
	if err := c.store.Put(ctx, signatureDir(digest)+id, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("sign %s:%s: %w", m.Name, m.Version, err)
	}
	return nil
}

// DeleteSignature deletes key id's signature of digest, if there is one.
func (c *Catalog) DeleteSignature(ctx context.Context, digest, id string) error {
	if err := ident.Digest(digest); err != nil {
		return err
	}
	if err := c.store.Delete(ctx, signatureDir(digest)+id); err != nil {
		return fmt.Errorf("delete signature %s of %s: %w", id, digest, err)
	}
	return nil
}

// Signatures returns the key ids that have signed digest, sorted.
func (c *Catalog) Signatures(ctx context.Context, digest string) ([]string, error) {
	if err := ident.Digest(digest); err != nil {
		return nil, err
	}
	dir := signatureDir(digest)
	var ids []string
	err := c.retry(ctx, func(ctx context.Context) error {
		ids = ids[:0]
		return c.store.List(ctx, dir, func(oi storage.ObjectInfo) error {
			if id := strings.TrimPrefix(oi.Key, dir); id != "" && !strings.Contains(id, "/") {
				ids = append(ids, id)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list signatures of %s: %w", digest, err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Verify checks that the image m named digest carries a valid signature
// by a key in ring, and returns that key's id. It fails with
// ErrSignatureMissing when the image has no signature, and with
// ErrSignatureInvalid when no signature is by a trusted key or none of
// those verifies; both name the image and the key ids.
func (c *Catalog) Verify(ctx context.Context, m *Manifest, digest string, ring *KeyRing) (string, error) {
	image := m.Name + ":" + m.Version + " (" + digest + ")"
	ids, err := c.Signatures(ctx, digest)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("%w: %s has no signature; trusted keys are %s (sign it with imagefarm image sign)",
			ErrSignatureMissing, image, strings.Join(ring.IDs(), ", "))
	}
	var problems []string
	for _, id := range ids {
		key, trusted := ring.keys[id]
		if !trusted {
			continue
		}
		err := c.verifyOne(ctx, m, digest, key)
		if err == nil {
			return id, nil
		}
		if errors.Is(err, ErrStorageUnavailable) || ctx.Err() != nil {
			return "", err
		}
		problems = append(problems, fmt.Sprintf("key %s: %v", id, err))
	}
	if len(problems) == 0 {
		return "", fmt.Errorf("%w: %s is signed only by keys %s, none of them trusted (trusted: %s)",
			ErrSignatureInvalid, image, strings.Join(ids, ", "), strings.Join(ring.IDs(), ", "))
	}
	return "", fmt.Errorf("%w: %s: %s", ErrSignatureInvalid, image, strings.Join(problems, "; "))
}

// verifyOne checks key's signature of digest against the statement the
// manifest itself makes, so that a signature for another name, version or
// digest does not verify.
func (c *Catalog) verifyOne(ctx context.Context, m *Manifest, digest string, key PublicKey) error {
	var data []byte
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		data, err = c.readSmall(ctx, signatureDir(digest)+key.ID, maxSignatureBytes)
		return err
	})
	if err != nil {
		return fmt.Errorf("read signature: %w", err)
	}
	var sig Signature
	if err := json.Unmarshal(data, &sig); err != nil {
		return fmt.Errorf("signature does not decode: %v", err)
	}
	want := StatementFor(m, digest)
	switch {
	case sig.KeyID != key.ID:
		return fmt.Errorf("signature file names key %q", sig.KeyID)
	case sig.Statement.Digest != want.Digest || sig.Statement.Name != want.Name || sig.Statement.Version != want.Version:
		return fmt.Errorf("signature is for %s:%s (%s), not this image", sig.Statement.Name, sig.Statement.Version, sig.Statement.Digest)
	case !ed25519.Verify(key.Key, want.Bytes(), sig.Sig):
		return errors.New("signature does not verify against the manifest")
	}
	return nil
}
