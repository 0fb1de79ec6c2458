package catalog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

func newKey(t *testing.T) *catalog.SigningKey {
	t.Helper()
	k, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeysRoundTrip(t *testing.T) {
	k := newKey(t)
	dir := t.TempDir()
	pemBytes, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "farm.key")
	os.WriteFile(path, pemBytes, 0o600)
	got, err := catalog.LoadSigningKey(path)
	if err != nil || got.ID != k.ID {
		t.Fatalf("LoadSigningKey() = %v, %v, want id %s", got, err, k.ID)
	}
	line := k.Public("depot farm").String()
	if !strings.HasPrefix(line, catalog.PublicKeyType+" ") || !strings.HasSuffix(line, " depot farm") {
		t.Errorf("Public().String() = %q", line)
	}
	keys, err := catalog.ParsePublicKeys([]byte("# trusted\n\n" + line + "\n" + newKey(t).Public("").String() + "\n"))
	if err != nil || len(keys) != 2 || keys[0].ID != k.ID || keys[0].Name != "depot farm" {
		t.Fatalf("ParsePublicKeys() = %+v, %v", keys, err)
	}
	for _, bad := range []string{"ssh-ed25519 AAAA x", catalog.PublicKeyType + " notbase64!", catalog.PublicKeyType + " AAAA"} {
		if _, err := catalog.ParsePublicKeys([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKeys(%q) = nil error, want one", bad)
		}
	}
}

// TestVerify pushes signed and unsigned images and checks Verify's verdict
// on each way a signature can be missing or wrong.
func TestVerify(t *testing.T) {
	for name, c := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			farm, other := newKey(t), newKey(t)
			ring := catalog.NewKeyRing(farm.Public("farm"))
			push := func(name, version string, key *catalog.SigningKey) *catalog.PushResult {
				img := diskImage(t, 4*testChunk, uint64(len(name+version)))
				res, err := c.Push(ctx, bytes.NewReader(img), int64(len(img)), catalog.PushOptions{Name: name, Version: version,
					Kind: catalog.KindDisk, ChunkSize: testChunk, SignKey: key})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			signed := push("win", "1", farm)
			if id, err := c.Verify(ctx, signed.Manifest, signed.Digest, ring); err != nil || id != farm.ID {
				t.Errorf("Verify(signed) = %q, %v, want %s", id, err, farm.ID)
			}
			unsigned := push("win", "2", nil)
			_, err := c.Verify(ctx, unsigned.Manifest, unsigned.Digest, ring)
			if !errors.Is(err, catalog.ErrSignatureMissing) || !strings.Contains(err.Error(), "win:2") || !strings.Contains(err.Error(), farm.ID) {
				t.Errorf("Verify(unsigned) = %v, want ErrSignatureMissing naming win:2 and key %s", err, farm.ID)
			}
			byOther := push("win", "3", other)
			_, err = c.Verify(ctx, byOther.Manifest, byOther.Digest, ring)
			if !errors.Is(err, catalog.ErrSignatureInvalid) || !strings.Contains(err.Error(), other.ID) {
				t.Errorf("Verify(untrusted) = %v, want ErrSignatureInvalid naming key %s", err, other.ID)
			}
			// A signature of another image, copied beside this one.
			moved := push("evil", "1", nil)
			copySignature(t, c, signed.Digest, moved.Digest, farm.ID, nil)
			_, err = c.Verify(ctx, moved.Manifest, moved.Digest, ring)
			if !errors.Is(err, catalog.ErrSignatureInvalid) || !strings.Contains(err.Error(), "win:1") {
				t.Errorf("Verify(moved signature) = %v, want ErrSignatureInvalid saying it is for win:1", err)
			}
			// A signature whose statement was rewritten to name this image.
			forged := push("evil", "2", nil)
			copySignature(t, c, signed.Digest, forged.Digest, farm.ID, func(s *catalog.Signature) {
				s.Statement = catalog.StatementFor(forged.Manifest, forged.Digest)
			})
			_, err = c.Verify(ctx, forged.Manifest, forged.Digest, ring)
			if !errors.Is(err, catalog.ErrSignatureInvalid) || !strings.Contains(err.Error(), "does not verify") {
				t.Errorf("Verify(forged statement) = %v, want ErrSignatureInvalid: does not verify", err)
			}
			// Signature bytes flipped.
			flipped := push("win", "4", farm)
			copySignature(t, c, flipped.Digest, flipped.Digest, farm.ID, func(s *catalog.Signature) { s.Sig[7] ^= 1 })
			_, err = c.Verify(ctx, flipped.Manifest, flipped.Digest, ring)
			if !errors.Is(err, catalog.ErrSignatureInvalid) {
				t.Errorf("Verify(flipped) = %v, want ErrSignatureInvalid", err)
			}
			// Signing an existing image afterwards makes it valid.
			if err := c.AddSignature(ctx, unsigned.Digest, farm.Public(""), farm.SignImage(unsigned.Manifest, unsigned.Digest)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Verify(ctx, unsigned.Manifest, unsigned.Digest, ring); err != nil {
				t.Errorf("Verify(signed later) = %v", err)
			}
		})
	}
}

// copySignature stores key's signature of from as a signature of to,
// edited by edit.
func copySignature(t *testing.T, c *catalog.Catalog, from, to, key string, edit func(*catalog.Signature)) {
	t.Helper()
	src := "signatures/sha256/" + strings.TrimPrefix(from, "sha256:") + "/" + key
	rc, err := c.Store().Open(t.Context(), src, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var sig catalog.Signature
	err = json.NewDecoder(rc).Decode(&sig)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&sig)
	}
	data, _ := json.Marshal(sig)
	dst := "signatures/sha256/" + strings.TrimPrefix(to, "sha256:") + "/" + key
	if err := c.Store().Put(t.Context(), dst, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// TestGCDeletesSignaturesWithTheirManifest checks that GC drops the
// signatures of a manifest it deletes and keeps those of live ones.
func TestGCDeletesSignaturesWithTheirManifest(t *testing.T) {
	c, _ := fileCatalog(t)
	ctx := t.Context()
	k := newKey(t)
	ring := catalog.NewKeyRing(k.Public(""))
	var pushed []*catalog.PushResult
	for i, v := range []string{"1", "2"} {
		img := diskImage(t, 2*testChunk, uint64(i))
		res, err := c.Push(ctx, bytes.NewReader(img), int64(len(img)), catalog.PushOptions{Name: "win", Version: v, ChunkSize: testChunk, SignKey: k})
		if err != nil {
			t.Fatal(err)
		}
		pushed = append(pushed, res)
	}
	if _, err := c.Remove(ctx, catalog.Ref{Name: "win", Tag: "1"}); err != nil {
		t.Fatal(err)
	}
	res, err := c.GC(ctx, 0, false)
	if err != nil || res.Signatures != 1 {
		t.Fatalf("GC() = %+v, %v, want 1 signature deleted", res, err)
	}
	if ids, err := c.Signatures(ctx, pushed[0].Digest); err != nil || len(ids) != 0 {
		t.Errorf("Signatures(deleted) = %v, %v, want none", ids, err)
	}
	if _, err := c.Verify(ctx, pushed[1].Manifest, pushed[1].Digest, ring); err != nil {
		t.Errorf("Verify(live) after GC = %v", err)
	}
}
