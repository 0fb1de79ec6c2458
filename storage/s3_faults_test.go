package storage_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestS3BodyCutShortIsUnreachable checks the Store contract the catalog
// relies on to tell a lost connection from a short object: a body that
// stops early fails with ErrUnreachable, never a clean io.EOF, and a
// stalled one fails in seconds.
func TestS3BodyCutShortIsUnreachable(t *testing.T) {
	srv := minioServer.Get(t)
	url := srv.NewBucket(t)
	direct, err := storage.Open(url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(data)
	if err := direct.Put(t.Context(), "big", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		fault func(p *testenv.FaultProxy)
	}{
		{"cut", func(p *testenv.FaultProxy) { p.Refuse(true) }},
		{"stalled", func(p *testenv.FaultProxy) { p.SetLatency(time.Hour) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testenv.StartFaultProxy(t, srv.Endpoint)
			s, err := storage.Open(proxy.StoreURL(url), storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rc, err := s.Open(t.Context(), "big", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, err := io.ReadFull(rc, make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
			tc.fault(proxy)
			start := time.Now()
			n, err := io.Copy(io.Discard, rc)
			took := time.Since(start)
			t.Logf("%s after 64 KiB: read %d more bytes, then after %v: %v", tc.name, n, took.Round(time.Millisecond), err)
			if !errors.Is(err, storage.ErrUnreachable) || n+64<<10 >= int64(len(data)) {
				t.Errorf("read of a body %s = %d bytes, %v; want fewer than %d and ErrUnreachable", tc.name, n+64<<10, err, len(data))
			}
			if took > time.Minute {
				t.Errorf("the %s body failed after %v, want within seconds", tc.name, took)
			}
		})
	}
}
