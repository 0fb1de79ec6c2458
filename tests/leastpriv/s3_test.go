package leastpriv_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/url"
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
	s, err := storage.Open(m.ScopedURL(t, bucket, "catalog", testenv.DeployPolicy(t, name, bucket)), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(s, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// TestImagerS3Credentials: with deploy/minio's admin policy an image is
// pushed; with the imager policy it is read back whole (as an imager's
// writer reads it, chunk by chunk, with its manifest and refs), while
// every write (a put, a delete, a push) is refused with ErrAccessDenied.
func TestImagerS3Credentials(t *testing.T) {
	m := minioServer.Get(t)
	u, err := url.Parse(m.NewBucket(t))
	if err != nil {
		t.Fatal(err)
	}
	bucket := u.Host
	admin, _ := scopedCatalog(t, m, bucket, "admin-policy.json")
	img := make([]byte, 3<<20+12345)
	rand.Read(img[:1<<20])
	opts := catalog.PushOptions{Name: "universal", Version: "1", Channels: []string{"stable"}, ChunkSize: 1 << 20}
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
