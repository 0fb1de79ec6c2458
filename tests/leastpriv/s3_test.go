package leastpriv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var minioServer testenv.SharedMinIO

func TestMain(m *testing.M) { minioServer.Main(m) }

// scopedCatalog opens prefix "catalog" of bucket with credentials limited
// to deploy/minio/name.
func scopedCatalog(t *testing.T, m *testenv.MinIO, bucket, name string) (*catalog.Catalog, storage.Store) {
	t.Helper()
	s, err := storage.Open(m.ScopedURL(t, bucket, "catalog", testenv.DeployPolicy(t, name, bucket, "catalog")), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(s, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// newBucket makes a bucket and returns its name.
func newBucket(t *testing.T, m *testenv.MinIO) string {
	t.Helper()
	u, err := url.Parse(m.NewBucket(t))
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestImagerS3Credentials: with deploy/minio's admin policy an image is
// pushed (its refs written with the controller's); with the imager policy
// it is read back whole (as an imager's writer reads it, chunk by chunk,
// with its manifest and refs), while every write (a put, a delete, a
// push) is refused with ErrAccessDenied.
func TestImagerS3Credentials(t *testing.T) {
	m := minioServer.Get(t)
	bucket := newBucket(t, m)
	admin, _ := scopedCatalog(t, m, bucket, "admin-policy.json")
	ctl, _ := scopedCatalog(t, m, bucket, "controller-policy.json")
	img := make([]byte, 3<<20+12345)
	rand.Read(img[:1<<20])
	opts := catalog.PushOptions{Name: "universal", Version: "1", Channels: []string{"stable"}, ChunkSize: 1 << 20, Refs: ctl}
	if _, err := admin.Push(t.Context(), bytes.NewReader(img), int64(len(img)), opts); err != nil {
		t.Fatalf("Push with the admin policy: %v", err)
	}

	imager, store := scopedCatalog(t, m, bucket, "imager-policy.json")
	ref, err := catalog.ParseRef("universal:stable")
	if err != nil {
		t.Fatal(err)
	}
	man, _, err := imager.Manifest(t.Context(), ref)
	if err != nil {
		t.Fatalf("Manifest(universal:stable) with the imager policy: %v", err)
	}
	var got bytes.Buffer
	if err := imager.Pull(t.Context(), man, &got, nil); err != nil {
		t.Fatalf("Pull with the imager policy: %v", err)
	}
	if !bytes.Equal(got.Bytes(), img) {
		t.Fatalf("Pull with the imager policy: %d bytes differ from the %d pushed", got.Len(), len(img))
	}
	if _, err := imager.List(t.Context(), ""); err != nil {
		t.Errorf("List with the imager policy: %v", err)
	}

	writes := map[string]func() error{
		"Put": func() error {
			return store.Put(t.Context(), "chunks/evil", strings.NewReader("evil"), 4)
		},
		"Create": func() error {
			return store.Create(t.Context(), "refs/evil", strings.NewReader("evil"), 4)
		},
		"Delete": func() error {
			var key string
			err := store.List(t.Context(), "chunks/", func(o storage.ObjectInfo) error { key = o.Key; return nil })
			if err != nil || key == "" {
				t.Fatalf("List(chunks/) with the imager policy = %q, %v", key, err)
			}
			return store.Delete(t.Context(), key)
		},
		"Push": func() error {
			opts := catalog.PushOptions{Name: "universal", Version: "2", Channels: []string{"stable"}}
			_, err := imager.Push(t.Context(), strings.NewReader("rolled back"), 11, opts)
			return err
		},
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, storage.ErrAccessDenied) {
			t.Errorf("%s with the imager policy = %v, want %v", name, err, storage.ErrAccessDenied)
		}
	}
	// Nothing changed: the image reads back the same.
	if man2, _, err := admin.Manifest(t.Context(), ref); err != nil || man2.Size != man.Size {
		t.Fatalf("after the refused writes, Manifest(universal:stable) = %v, %v", man2, err)
	}
}

// refsAndSignatures lists the keys under refs/ and signatures/ of s.
func refsAndSignatures(t *testing.T, s storage.Store) []string {
	t.Helper()
	var keys []string
	for _, prefix := range []string{"refs/", "signatures/"} {
		if err := s.List(t.Context(), prefix, func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatalf("List(%s) = %v", prefix, err)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestAdminS3CredentialsWriteNoRefs: with deploy/minio's admin policy an
// admin pushes (chunks, manifest, push marker) and collects garbage (gc),
// but every write to refs/ and every put to signatures/ is refused with
// ErrAccessDenied and changes nothing: refs and signatures are the
// controller's to write (deploy/minio/controller-policy.json), which in
// turn may not delete chunks (it stores device captures, never collects).
func TestAdminS3CredentialsWriteNoRefs(t *testing.T) {
	m := minioServer.Get(t)
	bucket := newBucket(t, m)
	admin, adminStore := scopedCatalog(t, m, bucket, "admin-policy.json")
	ctl, ctlStore := scopedCatalog(t, m, bucket, "controller-policy.json")
	key, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 2<<20+999)
	rand.Read(img)
	v1, err := admin.Push(t.Context(), bytes.NewReader(img), int64(len(img)), catalog.PushOptions{Name: "universal", Version: "1",
		Channels: []string{"stable"}, ChunkSize: 1 << 20, SignKey: key, Refs: ctl})
	if err != nil {
		t.Fatalf("Push with the admin policy, refs by the controller's: %v", err)
	}
	before := refsAndSignatures(t, ctlStore)

	d := v1.Digest
	writes := map[string]func() error{
		"Put a channel": func() error {
			return adminStore.Put(t.Context(), "refs/universal/channels/stable", strings.NewReader(d), int64(len(d)))
		},
		"Create a version": func() error {
			return adminStore.Create(t.Context(), "refs/universal/versions/9", strings.NewReader(d), int64(len(d)))
		},
		"Delete a version": func() error { return adminStore.Delete(t.Context(), "refs/universal/versions/1") },
		"Put a signature": func() error {
			return adminStore.Put(t.Context(), "signatures/sha256/"+d[7:]+"/evil", strings.NewReader("{}"), 2)
		},
		"SetChannel": func() error { return admin.SetChannel(t.Context(), "universal", "pilot", d) },
		"Remove": func() error {
			_, err := admin.Remove(t.Context(), catalog.Ref{Name: "universal", Tag: "stable"})
			return err
		},
		"AddSignature": func() error { return admin.AddSignature(t.Context(), d, key.Public(""), key.SignImage(v1.Manifest, d)) },
		"Push with its refs": func() error {
			_, err := admin.Push(t.Context(), strings.NewReader("two"), 3, catalog.PushOptions{Name: "universal", Version: "2"})
			return err
		},
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, storage.ErrAccessDenied) {
			t.Errorf("%s with the admin policy = %v, want %v", name, err, storage.ErrAccessDenied)
		}
	}
	if after := refsAndSignatures(t, ctlStore); !slices.Equal(after, before) {
		t.Errorf("refused writes changed refs/ or signatures/:\nbefore %q\nafter  %q", before, after)
	}
	for name, write := range map[string]func() error{
		"Delete a chunk": func() error {
			return ctlStore.Delete(t.Context(), "chunks/"+v1.Manifest.Chunks[0].ID[:2]+"/"+v1.Manifest.Chunks[0].ID)
		},
	} {
		if err := write(); !errors.Is(err, storage.ErrAccessDenied) {
			t.Errorf("%s with the controller policy = %v, want %v", name, err, storage.ErrAccessDenied)
		}
	}

	// Once the controller removed the image, the admin's gc frees it all,
	// its signature too.
	if _, err := ctl.Remove(t.Context(), catalog.Ref{Name: "universal", Digest: d}); err != nil {
		t.Fatal(err)
	}
	res, err := admin.GC(t.Context(), 0, false)
	if err != nil || res.Manifests != 2 || res.Chunks < 3 || res.Signatures != 1 {
		t.Errorf("GC with the admin policy = %+v, %v; want the 2 manifests (universal:1, the refused universal:2), their chunks and the signature deleted", res, err)
	}
}

// captureSink hands a cut disk's chunks to a Receiver, as the controller
// does for a capturing device.
type captureSink struct{ r *catalog.Receiver }

func (s captureSink) PutChunk(ctx context.Context, id string, _ int64, data []byte) (int64, bool, error) {
	if stored, ok, err := s.r.Have(ctx, id); ok || err != nil {
		return stored, false, err
	}
	stored, err := s.r.Put(ctx, id, data)
	return stored, true, err
}

// TestControllerS3CredentialsStoreACapture: with deploy/minio's
// controller policy the controller stores a device's capture whole (its
// push marker, chunks, manifest, signature and version), which reads back
// with the imager policy.
func TestControllerS3CredentialsStoreACapture(t *testing.T) {
	m := minioServer.Get(t)
	bucket := newBucket(t, m)
	ctl, _ := scopedCatalog(t, m, bucket, "controller-policy.json")
	key, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 3<<20)
	rand.Read(disk[:1<<20]) // and two zero chunks
	err = ctl.Receive(t.Context(), "capture", "1", func(ctx context.Context, r *catalog.Receiver) error {
		man, _, err := catalog.Cut(ctx, bytes.NewReader(disk), int64(len(disk)),
			catalog.PushOptions{Name: "capture", Version: "1", Kind: catalog.KindDisk, ChunkSize: 1 << 20}, captureSink{r})
		if err != nil {
			return err
		}
		_, err = r.Commit(ctx, man, catalog.PushOptions{SignKey: key})
		return err
	})
	if err != nil {
		t.Fatalf("capture with the controller policy: %v", err)
	}
	imager, _ := scopedCatalog(t, m, bucket, "imager-policy.json")
	man, digest, err := imager.Manifest(t.Context(), catalog.Ref{Name: "capture", Tag: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := imager.Pull(t.Context(), man, &got, nil); err != nil || !bytes.Equal(got.Bytes(), disk) {
		t.Fatalf("Pull(capture:1) with the imager policy = %d bytes, %v; want the %d captured", got.Len(), err, len(disk))
	}
	if _, err := imager.Verify(t.Context(), man, digest, catalog.NewKeyRing(key.Public(""))); err != nil {
		t.Errorf("capture:1's signature: %v", err)
	}
}
