package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/redact"
	"github.com/imagefarm/imagefarm/internal/wait"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Config is everything a controller needs.
type Config struct {
	NATSURL  string       // the JetStream-enabled NATS server
	Listen   string       // gRPC listen address, e.g. 127.0.0.1:7700
	Listener net.Listener // used instead of Listen when set (tests)
	// NATSCreds is the controller's NATS credentials file
	// (natsauth.ConnectOptions); none when empty.
	NATSCreds string
	// TLS is what the listener serves (pki.ServerConfig). Nil only with
	// Insecure.
	TLS *tls.Config
	// ClientCAs is the farm CA, which client certificates are verified
	// against; imagers must present one. Required with TLS.
	ClientCAs *x509.CertPool
	// Insecure serves plaintext, with no TLS and no identities, when TLS
	// is nil: for a lab on a trusted network only. It is logged loudly.
	Insecure bool
	// Catalog is the image store: read to resolve refs at submit time and
	// to list images, and written by the ref changes (CreateImageVersion,
	// SetImageChannel, RemoveImageRef, SignImage), which only the
	// controller makes: its credentials may write refs/ and signatures/
	// (deploy/minio/controller-policy.json).
	Catalog *catalog.Catalog
	// TrustedKeys, when set, are the only keys SignImage accepts
	// signatures by (the imagers' --trusted-keys); any key whose signature
	// verifies when nil.
	TrustedKeys *catalog.KeyRing
	// HeartbeatTTL is how long a node may stay silent before it is lost;
	// scheduler.DefaultHeartbeatTTL when 0.
	HeartbeatTTL time.Duration
	State        state.Config
	Dispatch     wire.Config
	Audit        audit.Config
	Log          *slog.Logger
	// BootstrapTokenFile, when set, is where the controller writes a new
	// admin token if the farm has no admin token (readable by its owner
	// only): the first token, to create the others with, or a new one after
	// the last admin token was revoked with force.
	BootstrapTokenFile string
	// CatalogScanInterval is how often the catalog watcher looks for
	// catalog changes nobody reported (catalogScanLoop); never when 0 or
	// negative, as --catalog-scan-interval 0 says (whose default is
	// DefaultCatalogScanInterval).
	CatalogScanInterval time.Duration
}

// Controller accepts jobs over gRPC, places them on the imagers' drives,
// dispatches them over JetStream and follows them through the imagers'
// status streams. All its state is in JetStream: a restarted controller
// picks up where the last one was.
type Controller struct {
	imagefarmv1.UnimplementedImageFarmServiceServer
	imagefarmv1.UnimplementedImagerServiceServer
	img images

	cfg   Config
	log   *slog.Logger
	st    *state.Store
	core  *core.Core
	pub   *wire.Publisher
	trail *audit.Log
	js    jetstream.JetStream
	kick  chan struct{} // wakes the scheduler
	addr  chan net.Addr
	farm  *farmView
	sizes sync.Map // manifest digest -> image size (uint64)
	// tokens are the client API's tokens, which authorize calls.
	tokens *tokens.Store
	// refs are the catalog refs the audit trail knows.
	refs *catalogrefs.Store
}

// New checks cfg and returns a controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.NATSURL == "" || (cfg.Listen == "" && cfg.Listener == nil) || cfg.Catalog == nil {
		return nil, errors.New("controller: config needs a NATS URL, a listen address and a catalog")
	}
	switch {
	case cfg.TLS == nil && !cfg.Insecure:
		return nil, errors.New("controller: config needs TLS, or Insecure to serve plaintext")
	case cfg.TLS != nil && cfg.ClientCAs == nil:
		return nil, errors.New("controller: config needs the farm CA (ClientCAs) with TLS, to verify imagers")
	}
	if cfg.HeartbeatTTL <= 0 {
		cfg.HeartbeatTTL = scheduler.DefaultHeartbeatTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Controller{cfg: cfg, log: cfg.Log, img: images{cat: cfg.Catalog},
		kick: make(chan struct{}, 1), addr: make(chan net.Addr, 1), farm: newFarmView()}, nil
}

// Addr returns the address the gRPC server listens on, once it does.
func (c *Controller) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case a := <-c.addr:
		c.addr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run serves until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	nc, err := c.connectNATS(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if c.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("controller: jetstream: %w", err)
	}
	if c.st, err = state.New(ctx, c.js, c.cfg.State); err != nil {
		return fmt.Errorf("controller: state: %w", err)
	}
	if c.pub, err = wire.NewPublisher(ctx, c.js, c.cfg.Dispatch); err != nil {
		return fmt.Errorf("controller: dispatch: %w", err)
	}
	if c.trail, err = audit.Open(ctx, c.js, c.cfg.Audit); err != nil {
		return fmt.Errorf("controller: audit: %w", err)
	}
	if c.core, err = core.New(core.Config{Store: c.st, Audit: auditor{trail: c.trail, log: c.log},
		Stop: taskStopper{pub: c.pub, farm: c.farm, log: c.log}, Log: c.log}); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if c.tokens, err = tokens.Open(ctx, c.js, c.cfg.State.Replicas); err != nil {
		return fmt.Errorf("controller: tokens: %w", err)
	}
	if c.refs, err = catalogrefs.Open(ctx, c.js, c.cfg.State.Replicas); err != nil {
		return fmt.Errorf("controller: catalog refs: %w", err)
	}
	if f := c.cfg.BootstrapTokenFile; f != "" {
		if err := c.bootstrapToken(ctx, f); err != nil {
			return fmt.Errorf("controller: bootstrap token: %w", err)
		}
	}
	lis := c.cfg.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", c.cfg.Listen); err != nil {
			return fmt.Errorf("controller: listen on %s: %w", c.cfg.Listen, err)
		}
	}
	creds := insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	} else {
		c.log.Warn(insecureWarning)
	}
	srv := grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.ChainUnaryInterceptor(c.recoverUnary, c.authUnary, c.authorizeUnary),
		grpc.ChainStreamInterceptor(c.recoverStream, c.authStream, c.authorizeStream))
	imagefarmv1.RegisterImageFarmServiceServer(srv, c)
	imagefarmv1.RegisterImagerServiceServer(srv, c)
	c.addr <- lis.Addr()
	c.log.Info("controller serving", "addr", lis.Addr().String(), "nats", redact.URL(c.cfg.NATSURL), "tls", c.cfg.TLS != nil)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(lis) })
	g.Go(func() error { <-gctx.Done(); srv.Stop(); return nil })
	g.Go(func() error { return c.scheduleLoop(gctx) })
	g.Go(func() error { return c.livenessLoop(gctx) })
	if c.cfg.CatalogScanInterval > 0 {
		g.Go(func() error { return c.catalogScanLoop(gctx) })
	}
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// connectNATS connects to NATS, waiting for it to come up: in a deploy the
// controller and the NATS server often start together.
func (c *Controller) connectNATS(ctx context.Context) (*nats.Conn, error) {
	auth, err := natsauth.ConnectOptions(c.cfg.NATSCreds)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	opts := append([]nats.Option{nats.Name("imagefarm-controller"), nats.MaxReconnects(-1)}, auth...)
	pause := wait.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		nc, err := nats.Connect(c.cfg.NATSURL, opts...)
		if err == nil {
			return nc, nil
		}
		err = redact.Error(err, c.cfg.NATSURL) // a URL that does not parse is quoted whole
		c.log.Warn("waiting for NATS", "url", redact.URL(c.cfg.NATSURL), "error", err)
		if !pause.Wait(ctx) {
			return nil, fmt.Errorf("controller: connect to NATS at %s: %w", redact.URL(c.cfg.NATSURL), err)
		}
	}
}

// wake asks the scheduler to run soon.
func (c *Controller) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
