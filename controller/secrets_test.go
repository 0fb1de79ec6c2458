package controller_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// syncBuffer is a bytes.Buffer safe for concurrent use: a log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runLogged runs a controller on natsURL until its log satisfies stop,
// and returns its log and what Run returned.
func runLogged(t *testing.T, natsURL string, stop func(log string) bool) (string, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := catalog.New(nil, catalog.Options{})
	var logs syncBuffer
	c, err := controller.New(controller.Config{NATSURL: natsURL, Listener: lis, Insecure: true, Catalog: cat,
		CatalogScanInterval: -1, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, "the log line to stop at", func() bool { return stop(logs.String()) })
	cancel()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run() still running 10s after cancel")
	}
	return logs.String(), err
}

// TestNATSPasswordIsNeverPrinted: a controller given a NATS URL with a
// password logs it without, also while it waits for a server it cannot
// reach or a URL it cannot parse, and its error quotes it without.
func TestNATSPasswordIsNeverPrinted(t *testing.T) {
	srv, _ := testenv.NATS(t)
	host := strings.TrimPrefix(srv.ClientURL(), "nats://")
	log, _ := runLogged(t, "nats://ctl:s3cret@"+host, func(log string) bool { return strings.Contains(log, "controller serving") })
	if strings.Contains(log, "s3cret") || !strings.Contains(log, "nats=nats://xxxxx@"+host) {
		t.Errorf("the controller's log shows the password, or no redacted URL:\n%s", log)
	}
	log, err := runLogged(t, "nats://ctl:s3cret@127.0.0.1:1,nats://ctl:s3cret@%zz", func(log string) bool { return strings.Contains(log, "waiting for NATS") })
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(log, "s3cret") || !strings.Contains(log, "nats://xxxxx@%zz") {
		t.Errorf("Run(an unparsable URL with a password) = %v, log:\n%s\nwant the URL without the password", err, log)
	}
}
