package imager

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/redact"
	"github.com/imagefarm/imagefarm/internal/wire"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// DefaultHeartbeatInterval is how often an agent sends a Heartbeat when
// neither its config nor the controller's HelloAck says.
const DefaultHeartbeatInterval = 5 * time.Second

// batchWindow is how long an agent waits after an assignment for more of
// the same job and image, so that one fan-out decompresses the image once
// for all their drives.
const batchWindow = 300 * time.Millisecond

// AgentConfig configures an imager node's agent.
type AgentConfig struct {
	// NodeID names the node in the farm; it must pass ident.NodeID.
	NodeID string
	// Pool and Labels are what job selectors match the node on; they must
	// pass ident.Pool and ident.Labels, as the controller checks them.
	Pool   string
	Labels map[string]string
	// Version is the imager's software version, for the controller.
	Version string
	// NATSURL is the NATS server the assignments come from
	// ("nats://127.0.0.1:4222").
	NATSURL string
	// NATSCreds is the node's NATS credentials file
	// (natsauth.ConnectOptions); none when empty.
	NATSCreds string
	// Controller is the host:port of the controller's gRPC listener.
	Controller string
	// TLS is how the controller is dialed (pki.ClientConfig): its
	// certificate verified against the farm CA, and this node's
	// certificate, which binds NodeID. Nil only with Insecure.
	TLS *tls.Config
	// Insecure dials the controller in plaintext when TLS is nil: for a
	// lab on a trusted network only. It is logged loudly.
	Insecure bool
	// Catalog is where images are read from; it should have the node cache.
	Catalog *catalog.Catalog
	// Drives says where the node's drives are and which it may write.
	Drives drive.Config
	// TrustedKeys are the keys every image must be signed by; it is
	// checked before a chunk is fetched. Nil only with AllowUnsigned.
	TrustedKeys *catalog.KeyRing
	// AllowUnsigned writes images without checking their signatures when
	// TrustedKeys is nil. It is logged loudly.
	AllowUnsigned bool
	// WriteWhileFetching: see WriterConfig.WriteWhileFetching.
	WriteWhileFetching bool
	// Dispatch sets the node's NATS consumer; it must be what the
	// controller uses. Zero fields take wire's defaults.
	Dispatch wire.Config
	// HeartbeatInterval overrides the interval the controller asks for in
	// HelloAck; when both are zero it is DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Log receives the agent's log; slog.Default() when nil.
	Log *slog.Logger
}

// Agent is an imager node: it tells the controller what drives it has and
// how its tasks go over one gRPC stream, and runs the assignments that
// come over NATS.
type Agent struct {
	cfg        AgentConfig
	log        *slog.Logger
	instanceID string
	writer     *Writer
	out        *outbox

	mu        sync.Mutex
	epoch     uint64               // from the latest HelloAck; 0 before the first
	tasks     map[taskKey]*taskRun // every run this process knows of
	settled   []taskKey            // runs that are over, oldest first (bounds tasks)
	early     map[taskKey]stopNote // cancels and stops for runs not seen yet
	earlyFIFO []taskKey
	batches   map[batchKey]*batch // assignments waiting for their batch to start
}

// NewAgent checks cfg and returns an agent; nothing is connected until Run.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if err := cmp.Or(ident.NodeID(cfg.NodeID), ident.Pool(cfg.Pool), ident.Labels(cfg.Labels)); err != nil {
		return nil, fmt.Errorf("imager agent: %w", err)
	}
	switch {
	case cfg.NATSURL == "":
		return nil, errors.New("imager agent: no NATS URL")
	case cfg.Controller == "":
		return nil, errors.New("imager agent: no controller address")
	case cfg.Catalog == nil:
		return nil, errors.New("imager agent: no catalog")
	case cfg.TLS == nil && !cfg.Insecure:
		return nil, errors.New("imager agent: no TLS config, and not Insecure")
	case cfg.TrustedKeys == nil && !cfg.AllowUnsigned:
		return nil, errors.New("imager agent: no trusted keys to verify images against (--trusted-keys FILE), and unsigned images not allowed (--allow-unsigned)")
	}
	if _, err := drive.Discover(cfg.Drives); err != nil {
		return nil, fmt.Errorf("imager agent: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Log.With("node_id", cfg.NodeID),
		instanceID: rand.Text(),
		tasks:      map[taskKey]*taskRun{},
		early:      map[taskKey]stopNote{},
		batches:    map[batchKey]*batch{},
	}
	trust, err := agentTrust(cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.writer = NewWriter(WriterConfig{Catalog: cfg.Catalog, Trust: trust, WriteWhileFetching: cfg.WriteWhileFetching, Log: a.log})
	a.out = newOutbox(a.acknowledged)
	return a, nil
}

// Run connects to NATS and the controller and works until ctx ends, then
// returns nil, once every write it started has ended. It returns an error
// only when it cannot go on (the NATS connection closed for good).
func (a *Agent) Run(ctx context.Context) error {
	auth, err := natsauth.ConnectOptions(a.cfg.NATSCreds)
	if err != nil {
		return fmt.Errorf("imager agent: %w", err)
	}
	// Replies come to the node's own inbox prefix, the only one its NATS
	// user may subscribe to.
	nc, err := nats.Connect(a.cfg.NATSURL, append([]nats.Option{nats.Name("imagefarm imager " + a.cfg.NodeID),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(a.cfg.NodeID))}, auth...)...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", redact.URL(a.cfg.NATSURL), redact.Error(err, a.cfg.NATSURL))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	client, closeClient, err := a.dial()
	if err != nil {
		return err
	}
	defer closeClient()
	g, ctx := errgroup.WithContext(ctx)
	sub, err := wire.NewSubscriber(js, wire.SubscriberConfig{
		NodeID:   a.cfg.NodeID,
		Dispatch: a.cfg.Dispatch,
		OnError:  func(err error) { a.log.Warn("dispatch", "error", err) },
	}, func(ctx context.Context, d *wire.Delivery) { a.handle(ctx, g, d) })
	if err != nil {
		return err
	}
	if a.cfg.TLS == nil {
		a.log.Warn(insecureWarning, "controller", a.cfg.Controller)
	}
	a.log.Info("imager agent starting", "instance_id", a.instanceID, "controller", a.cfg.Controller, "nats", redact.URL(a.cfg.NATSURL), "tls", a.cfg.TLS != nil)
	g.Go(func() error { return a.stayConnected(ctx, client) })
	g.Go(func() error { return a.watchDrives(ctx) })
	g.Go(func() error { return sub.Run(ctx) })
	return g.Wait()
}

// currentEpoch is the node's epoch from the latest HelloAck.
func (a *Agent) currentEpoch() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.epoch
}

// send queues one numbered message for the controller.
func (a *Agent) send(m *imagefarmv1.ConnectRequest) uint64 { return a.out.add(m) }
