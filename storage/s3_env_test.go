package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage"
)

// TestS3CredentialsFromEnvironment checks that a store URL without
// credentials= takes its keys from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, and says so when they are wrong.
func TestS3CredentialsFromEnvironment(t *testing.T) {
	srv := minioServer.Get(t)
	u, err := url.Parse(srv.NewBucket(t))
	if err != nil {
		t.Fatal(err)
	}
	storeURL := fmt.Sprintf("s3://%s/env?endpoint=%s&insecure=true", u.Host, srv.Endpoint)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none") // nothing to fall back on
	for _, tc := range []struct {
		name, id, secret string
		want             error
	}{
		{"right keys", srv.AccessKey, srv.SecretKey, nil},
		{"wrong secret", srv.AccessKey, "wrong-secret", storage.ErrAccessDenied},
		{"unknown key", "nobody", "wrong-secret", storage.ErrAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tc.id)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.secret)
			s, err := storage.Open(storeURL, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(t.Context(), "obj", strings.NewReader("data"), 4)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Put with the environment's keys = %v", err)
				}
				if got := read(t, s, "obj", 0, -1); got != "data" {
					t.Errorf("Open(obj) = %q, want %q", got, "data")
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
				t.Errorf("Put with wrong keys = %v, want %v naming AWS_ACCESS_KEY_ID", err, tc.want)
			}
		})
	}
}

// TestS3TLSIsTheDefault checks that an s3:// URL without insecure=true
// speaks TLS, so a plain-HTTP server is an error naming its endpoint.
func TestS3TLSIsTheDefault(t *testing.T) {
	srv := minioServer.Get(t)
	u, err := url.Parse(srv.NewBucket(t))
	if err != nil {
		t.Fatal(err)
	}
	storeURL := fmt.Sprintf("s3://%s/tls?endpoint=%s&retries=1&credentials=%s", u.Host, srv.Endpoint, srv.CredentialsFile)
	s, err := storage.Open(storeURL, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.String(), "s3://") || !strings.Contains(s.String(), "https://") {
		t.Errorf("String() = %q, want an https endpoint", s.String())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = s.Stat(ctx, "key")
	t.Logf("Stat over TLS against plain HTTP: %v", err)
	if err == nil || !strings.Contains(err.Error(), srv.Endpoint) {
		t.Errorf("Stat over TLS against a plain-HTTP server = %v, want an error naming %s", err, srv.Endpoint)
	}
	if ctx.Err() != nil {
		t.Errorf("Stat took the whole 30s, want it to fail at once")
	}
}
