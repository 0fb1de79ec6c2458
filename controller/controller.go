package controller

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/fleet"
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
	// SignKey, when set, signs what the controller itself stores in the
	// catalog: the captures of devices (SubmitCapture). Without it a
	// capture is stored unsigned, and its job result says so.
	SignKey *catalog.SigningKey
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
	// catalog changes nobody reported (catalogWatcher); never when 0 or
	// negative, as --catalog-scan-interval 0 says (whose default is
	// DefaultCatalogScanInterval).
	CatalogScanInterval time.Duration
	// Devices tunes network boot (devices.go).
	Devices DevicesConfig
	// RolloutTick is how often the rollout loop runs when nothing asks it
	// to (a device's report, an operator's action do); 2 s when 0.
	RolloutTick time.Duration
	// Metrics is the private registry the controller's Prometheus
	// metrics (imagefarm_...) are registered on; none are served when nil.
	Metrics prometheus.Registerer
}

// Controller accepts jobs over gRPC, places them on the imagers' drives,
// dispatches them over JetStream and follows them through the imagers'
// status streams. All its state is in JetStream: a restarted controller
// picks up where the last one was.
//
// It is made of: the core (controller/core), which makes every job, task,
// drive and node change; two gRPC adapters over it, the client API
// (apiServer) and the imagers' streams (imagerServer); and three loops,
// the placer, liveness and the catalog watcher.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	addr chan net.Addr
}

// New checks cfg and returns a controller; Run connects it and starts it.
// New makes no connection, so that a controller can be made (and its
// configuration refused) before NATS is up.
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
	return &Controller{cfg: cfg, log: cfg.Log, addr: make(chan net.Addr, 1)}, nil
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

// Run connects to NATS, opens what the controller keeps there, builds its
// parts on it and serves until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	nc, err := c.connectNATS(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("controller: jetstream: %w", err)
	}
	b, err := c.open(ctx, js)
	if err != nil {
		return err
	}
	p, err := c.build(b)
	if err != nil {
		return err
	}
	if f := c.cfg.BootstrapTokenFile; f != "" {
		if err := p.api.bootstrapToken(ctx, f); err != nil {
			return fmt.Errorf("controller: bootstrap token: %w", err)
		}
	}
	return c.serve(ctx, nc, p)
}

// backend is what the controller keeps in JetStream.
type backend struct {
	st     *state.Store
	pub    *wire.Publisher
	trail  *audit.Log
	tokens *tokens.Store
	refs   *catalogrefs.Store
	dev    *deviceFarm
	fleet  *fleet.Store
}

// open creates or opens the controller's buckets and streams.
func (c *Controller) open(ctx context.Context, js jetstream.JetStream) (*backend, error) {
	var b backend
	var err error
	if b.st, err = state.New(ctx, js, c.cfg.State); err != nil {
		return nil, fmt.Errorf("controller: state: %w", err)
	}
	if b.pub, err = wire.NewPublisher(ctx, js, c.cfg.Dispatch); err != nil {
		return nil, fmt.Errorf("controller: dispatch: %w", err)
	}
	if b.trail, err = audit.Open(ctx, js, c.cfg.Audit); err != nil {
		return nil, fmt.Errorf("controller: audit: %w", err)
	}
	if b.tokens, err = tokens.Open(ctx, js, c.cfg.State.Replicas); err != nil {
		return nil, fmt.Errorf("controller: tokens: %w", err)
	}
	if b.refs, err = catalogrefs.Open(ctx, js, c.cfg.State.Replicas); err != nil {
		return nil, fmt.Errorf("controller: catalog refs: %w", err)
	}
	if b.dev, err = openDevices(ctx, js, c.cfg.State.Replicas, c.cfg.Devices); err != nil {
		return nil, fmt.Errorf("controller: devices: %w", err)
	}
	if b.fleet, err = fleet.Open(ctx, js, c.cfg.State.Replicas); err != nil {
		return nil, fmt.Errorf("controller: fleet: %w", err)
	}
	return &b, nil
}

// parts are the controller's components: the core, the two gRPC adapters
// over it and the loops.
type parts struct {
	api     *apiServer
	imagers *imagerServer
	devices *deviceServer
	auth    authorizer
	place   *placer
	alive   *liveness
	watcher *catalogWatcher // nil when the catalog is never scanned
	fleet   *fleetServer
	metrics *apiMetrics
}

// build makes the controller's parts on b.
func (c *Controller) build(b *backend) (*parts, error) {
	rec := auditor{trail: b.trail, log: c.log}
	live := newFarmView()
	cr, err := core.New(core.Config{Store: b.st, Audit: rec, Stop: taskStopper{pub: b.pub, live: live, log: c.log}, Log: c.log,
		Fleet: b.fleet})
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	view := &storeView{st: b.st, devs: b.dev.records, cat: c.cfg.Catalog, log: c.log}
	place := newPlacer(cr, view, b.pub, c.log)
	p := &parts{auth: authorizer{tokens: b.tokens, creds: b.dev.creds}, place: place,
		api: &apiServer{img: images{cat: c.cfg.Catalog}, cat: c.cfg.Catalog, trusted: c.cfg.TrustedKeys, st: b.st, core: cr,
			view: view, live: live, audit: rec, tokens: b.tokens, refs: b.refs, log: c.log, wake: place.wake},
		imagers: &imagerServer{st: b.st, core: cr, view: view, live: live, audit: rec, ttl: c.cfg.HeartbeatTTL,
			insecure: c.cfg.TLS == nil, log: c.log, wake: place.wake},
		alive: &liveness{st: b.st, core: cr, view: view, live: live, audit: rec, ttl: c.cfg.HeartbeatTTL, log: c.log, wake: place.wake},
	}
	p.devices = &deviceServer{st: b.st, core: cr, cat: c.cfg.Catalog, imagers: p.imagers, audit: rec, dev: b.dev, fleet: b.fleet,
		refs: b.refs, signKey: c.cfg.SignKey, ttl: c.cfg.HeartbeatTTL, log: c.log, wake: place.wake}
	p.api.dev = p.devices
	p.devices.tokens, p.devices.submitReset = b.tokens, p.api.SubmitReset
	p.fleet = &fleetServer{st: b.st, core: cr, fleet: b.fleet, cat: c.cfg.Catalog, view: view, dev: p.devices, audit: rec, log: c.log,
		wake: place.wake, kicks: make(chan struct{}, 1), tick: cmp.Or(c.cfg.RolloutTick, defaultRolloutTick)}
	p.api.fleet, p.devices.kickRollouts = p.fleet, p.fleet.kick
	if c.cfg.CatalogScanInterval > 0 {
		p.watcher = &catalogWatcher{cat: c.cfg.Catalog, refs: b.refs, audit: rec, interval: c.cfg.CatalogScanInterval, log: c.log}
	}
	if p.metrics, err = newAPIMetrics(c.cfg.Metrics); err != nil {
		return nil, fmt.Errorf("controller: metrics: %w", err)
	}
	p.imagers.metrics, p.alive.metrics = p.metrics, p.metrics
	return p, nil
}

// serve serves the gRPC services and runs the loops until ctx ends; its
// health service follows nc.
func (c *Controller) serve(ctx context.Context, nc *nats.Conn, p *parts) error {
	lis := c.cfg.Listener
	if lis == nil {
		var err error
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
	m := p.metrics
	srv := grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.ChainUnaryInterceptor(c.recoverUnary, m.unary, statusUnary, c.authUnary, p.auth.authorizeUnary),
		grpc.ChainStreamInterceptor(c.recoverStream, m.stream, statusStream, c.authStream, p.auth.authorizeStream))
	imagefarmv1.RegisterImageFarmServiceServer(srv, p.api)
	imagefarmv1.RegisterImagerServiceServer(srv, p.imagers)
	imagefarmv1.RegisterDeviceServiceServer(srv, p.devices)
	hs := registerProbes(srv)
	c.addr <- lis.Addr()
	c.log.Info("controller serving", "addr", lis.Addr().String(), "nats", redact.URL(c.cfg.NATSURL), "tls", c.cfg.TLS != nil)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(lis) })
	g.Go(func() error { <-gctx.Done(); srv.Stop(); return nil })
	g.Go(func() error { trackHealth(gctx, nc, hs); return nil })
	g.Go(func() error { return p.place.Run(gctx) })
	g.Go(func() error { return p.alive.Run(gctx) })
	g.Go(func() error { return p.devices.Run(gctx) })
	g.Go(func() error { return p.fleet.Run(gctx) })
	if p.watcher != nil {
		g.Go(func() error { return p.watcher.Run(gctx) })
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
