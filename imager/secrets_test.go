package imager_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestNATSPasswordIsNeverPrinted: an imager given a NATS URL with a
// password logs it without, and a URL list it cannot parse fails with an
// error that quotes it without.
func TestNATSPasswordIsNeverPrinted(t *testing.T) {
	srv, _ := testenv.NATS(t)
	host := strings.TrimPrefix(srv.ClientURL(), "nats://")
	cat, err := catalog.New(nil, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	agent := func(natsURL string, logs *lockedBuffer) *imager.Agent {
		t.Helper()
		a, err := imager.NewAgent(imager.AgentConfig{NodeID: testNode, NATSURL: natsURL, Controller: "127.0.0.1:1", Insecure: true,
			Catalog: cat, Drives: drive.Config{VirtualDir: t.TempDir()}, AllowUnsigned: true, Log: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	var logs lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- agent("nats://imager:s3cret@"+host, &logs).Run(ctx) }()
	testenv.Eventually(t, waitLong, "the agent's start in its log", func() bool { return strings.Contains(logs.String(), "imager agent starting") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if strings.Contains(logs.String(), "s3cret") || !strings.Contains(logs.String(), "nats://xxxxx@"+host) {
		t.Errorf("the agent's log shows the password, or no redacted URL:\n%s", logs.String())
	}

	var none lockedBuffer
	err = agent("nats://imager:s3cret@"+host+",nats://imager:s3cret@%zz", &none).Run(t.Context())
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(none.String(), "s3cret") {
		t.Errorf("Run(an unparsable URL with a password) = %v, log %q; want an error without the password", err, none.String())
	}
}
