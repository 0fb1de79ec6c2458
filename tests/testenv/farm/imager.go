package farm

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/imager"
)

// stopWithin bounds how long a stopped agent may take to return.
const stopWithin = 20 * time.Second

// Imager is a real imager agent of the farm, running in the test's
// process.
type Imager struct {
	stop func()
}

// Stop shuts the agent down, as SIGTERM does, and waits for it; it fails
// the test unless Run returns nil within 20s. The test's end stops it too.
func (im *Imager) Stop() { im.stop() }

// StartImager runs a real imager agent with cfg until the test ends. What
// cfg leaves empty is the farm's: its NATS, its controller (Addr), the
// certificate of cfg.NodeID from the farm CA (or plaintext with
// Options.Plaintext), its catalog, and a debug log on the test's output.
func (f *Farm) StartImager(t testing.TB, cfg imager.AgentConfig) *Imager {
	t.Helper()
	if cfg.NATSURL == "" {
		cfg.NATSURL = f.NATS.ClientURL()
	}
	if cfg.Controller == "" {
		cfg.Controller = f.Addr
	}
	if cfg.TLS == nil && !cfg.Insecure {
		cfg.Insecure = f.opts.Plaintext
		if !cfg.Insecure {
			cfg.TLS = f.PKI.ClientTLS(t, cfg.NodeID)
		}
	}
	if cfg.Catalog == nil {
		cfg.Catalog = f.Catalog
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := imager.NewAgent(cfg)
	if err != nil {
		t.Fatalf("NewAgent() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("imager %s: Run() after cancel = %v, want nil", cfg.NodeID, err)
			}
		case <-time.After(stopWithin):
			t.Errorf("imager %s: Run() still running %v after cancel", cfg.NodeID, stopWithin)
		}
	})
	t.Cleanup(stop)
	return &Imager{stop: stop}
}
