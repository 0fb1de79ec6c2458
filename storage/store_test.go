package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var minioServer testenv.SharedMinIO

func TestMain(m *testing.M) { minioServer.Main(m) }

// stores returns one fresh store of each backend; every conformance test
// runs against all of them.
func stores(t *testing.T) map[string]storage.Store {
	t.Helper()
	file, err := storage.Open("file://"+t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := storage.Open(minioServer.Get(t).NewBucket(t), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]storage.Store{"file": file, "s3": s3}
}

func put(t *testing.T, s storage.Store, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q) = %v", key, err)
	}
}

func read(t *testing.T, s storage.Store, key string, off, n int64) string {
	t.Helper()
	rc, err := s.Open(t.Context(), key, off, n)
	if err != nil {
		t.Fatalf("Open(%q, %d, %d) = %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return string(b)
}

func TestConformancePutOpenRanges(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			put(t, s, "a/b/obj", "0123456789")
			for _, tc := range []struct {
				off, n int64
				want   string
			}{{0, -1, "0123456789"}, {3, -1, "3456789"}, {2, 3, "234"}, {0, 1, "0"}, {9, 1, "9"}, {4, 0, ""}} {
				if got := read(t, s, "a/b/obj", tc.off, tc.n); got != tc.want {
					t.Errorf("Open(a/b/obj, %d, %d) = %q, want %q", tc.off, tc.n, got, tc.want)
				}
			}
			put(t, s, "a/b/obj", "new")
			if got := read(t, s, "a/b/obj", 0, -1); got != "new" {
				t.Errorf("after overwrite Open = %q, want %q", got, "new")
			}
		})
	}
}

func TestConformanceMissingAndDelete(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			if _, err := s.Open(ctx, "nope", 0, -1); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Open(missing) = %v, want ErrNotFound", err)
			}
			if _, err := s.Stat(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
			}
			put(t, s, "x", "data")
			oi, err := s.Stat(ctx, "x")
			if err != nil || oi.Size != 4 || oi.Key != "x" {
				t.Errorf("Stat(x) = %+v, %v, want size 4", oi, err)
			}
			if err := s.Delete(ctx, "x"); err != nil {
				t.Errorf("Delete(x) = %v", err)
			}
			if err := s.Delete(ctx, "x"); err != nil {
				t.Errorf("Delete(x) again = %v, want nil", err)
			}
			if _, err := s.Stat(ctx, "x"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestConformanceList(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for _, k := range []string{"refs/a/versions/1", "refs/a/channels/stable", "refs/ab/versions/1", "chunks/00/x", "top"} {
				put(t, s, k, k)
			}
			for _, tc := range []struct {
				prefix string
				want   []string
			}{
				{"refs/a/", []string{"refs/a/channels/stable", "refs/a/versions/1"}},
				{"refs/a", []string{"refs/a/channels/stable", "refs/a/versions/1", "refs/ab/versions/1"}},
				{"chunks/", []string{"chunks/00/x"}},
				{"", []string{"chunks/00/x", "refs/a/channels/stable", "refs/a/versions/1", "refs/ab/versions/1", "top"}},
				{"missing/", nil},
			} {
				var got []string
				err := s.List(t.Context(), tc.prefix, func(oi storage.ObjectInfo) error {
					got = append(got, oi.Key)
					return nil
				})
				slices.Sort(got)
				if err != nil || !slices.Equal(got, tc.want) {
					t.Errorf("List(%q) = %q, %v, want %q", tc.prefix, got, err, tc.want)
				}
			}
			stop := errors.New("stop")
			if err := s.List(t.Context(), "", func(storage.ObjectInfo) error { return stop }); err != stop {
				t.Errorf("List with fn error = %v, want that error", err)
			}
		})
	}
}

func TestConformanceTouch(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			put(t, s, "old", "x")
			before, _ := s.Stat(t.Context(), "old")
			time.Sleep(1100 * time.Millisecond) // S3 times have second resolution
			if err := s.Touch(t.Context(), "old"); err != nil {
				t.Fatalf("Touch = %v", err)
			}
			after, _ := s.Stat(t.Context(), "old")
			if !after.ModTime.After(before.ModTime) {
				t.Errorf("ModTime after Touch = %v, want after %v", after.ModTime, before.ModTime)
			}
			if got := read(t, s, "old", 0, -1); got != "x" {
				t.Errorf("content after Touch = %q, want %q", got, "x")
			}
		})
	}
}

func TestConformanceBadKeys(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for _, key := range []string{"", "../escape", "a/../../b", "/abs", "a//b", "a/./b", "dir/", "ctl\x01", "new\nline", `back\slash`} {
				err := s.Put(t.Context(), key, bytes.NewReader(nil), 0)
				if !errors.Is(err, storage.ErrInvalidKey) {
					t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
				}
			}
		})
	}
}

func TestS3Errors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	port, _ := testenv.FreePort()
	for _, tc := range []struct {
		name, url string
		want      error
		mention   string
	}{
		{"unreachable", fmt.Sprintf("s3://bkt/p?endpoint=127.0.0.1:%d&insecure=true&retries=2", port), storage.ErrUnreachable, fmt.Sprint(port)},
		{"wrong credentials", fmt.Sprintf("s3://bkt/p?endpoint=%s&insecure=true&credentials=%s", minioServer.Get(t).Endpoint, writeCreds(t, "wrong", "wrong-secret")), storage.ErrAccessDenied, "AWS_ACCESS_KEY_ID"},
		{"missing bucket", minioServer.Get(t).URL("no-such-bucket", "p"), storage.ErrNoBucket, "no-such-bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := storage.Open(tc.url, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Stat(ctx, "key")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) || strings.Contains(err.Error(), "wrong-secret") {
				t.Errorf("Stat = %v, want %v mentioning %q, without the secret key", err, tc.want, tc.mention)
			}
		})
	}
}

func writeCreds(t *testing.T, id, secret string) string {
	p := t.TempDir() + "/creds"
	os.WriteFile(p, []byte("[default]\naws_access_key_id = "+id+"\naws_secret_access_key = "+secret+"\n"), 0o600)
	return p
}

func TestOpenBadURLs(t *testing.T) {
	for _, u := range []string{"ftp://x", "s3://bucket/p", "s3://b/p?endpoint=h:1", "s3:///p?endpoint=h:1", "file://host/path", "file://relative", "s3://b/p?endpoint=h:1&insecure=maybe", "s3://b/../x?endpoint=h:1", "%zz"} {
		if _, err := storage.Open(u, storage.Options{}); !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
		}
	}
}

// TestOpenKeepsCredentialsOutOfErrors: a store URL with credentials in it
// is refused, saying where S3 keys go, and no error quotes the secret,
// also of a URL that does not parse.
func TestOpenKeepsCredentialsOutOfErrors(t *testing.T) {
	for _, u := range []string{
		"s3://AKIAEXAMPLE:s3cret@bucket/p?endpoint=127.0.0.1:9000",
		"s3://s3cret@bucket/p?endpoint=127.0.0.1:9000",
		"file://user:s3cret@localhost/srv/images",
		"s3://AKIA:s3cret@bucket/p?endpoint=127.0.0.1:9000&insecure=maybe",
		"s3://AKIA:s3cret@bu cket/p",
		"s3://AKIA:s3cret@%zz/p",
		"ftp://AKIA:s3cret@host/p",
	} {
		_, err := storage.Open(u, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %v, want ErrBadURL without the secret", u, err)
		}
	}
	_, err := storage.Open("s3://AKIA:s3cret@bucket/p?endpoint=127.0.0.1:9000", storage.Options{})
	if want := "a store URL carries no credentials; give S3 keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open(an S3 URL with keys) = %v, want %q", err, want)
	}
}

func TestConformanceCreate(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			if err := s.Create(t.Context(), "refs/a", strings.NewReader("first"), 5); err != nil {
				t.Fatalf("Create = %v", err)
			}
			if err := s.Create(t.Context(), "refs/a", strings.NewReader("second"), 6); !errors.Is(err, storage.ErrExists) {
				t.Errorf("Create over an existing key = %v, want ErrExists", err)
			}
			if got := read(t, s, "refs/a", 0, -1); got != "first" {
				t.Errorf("after a refused Create the object is %q, want %q", got, "first")
			}
			var wins atomic.Int32
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					if s.Create(t.Context(), "refs/race", strings.NewReader(fmt.Sprint(i)), 1) == nil {
						wins.Add(1)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Errorf("%d of 8 racing Creates succeeded, want exactly 1", wins.Load())
			}
		})
	}
}
