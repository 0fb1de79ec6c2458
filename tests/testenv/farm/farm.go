package farm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// Image is what Start pushes as img:1 when Options.Image is set: 900 kB of
// a repeated word, a disk image to the controller.
var Image = bytes.Repeat([]byte("imagefarm"), 100000)

// Options says what farm to start; the zero value is a controller with TLS
// and its default heartbeat TTL, no catalog watcher and an empty catalog.
type Options struct {
	// HeartbeatTTL is the controller's; its default when 0.
	HeartbeatTTL time.Duration
	// CatalogScanInterval is the controller's. When 0 there is no catalog
	// watcher, so that the audit trail holds only what the test does.
	CatalogScanInterval time.Duration
	// TrustedKeys are the controller's.
	TrustedKeys *catalog.KeyRing
	// Plaintext serves the controller without TLS (Insecure), as a lab on
	// a trusted network does; clients send tokens in plaintext.
	Plaintext bool
	// PushImage pushes Image as img:1 before the controller starts.
	PushImage bool
	// NoController starts NATS, the store and the CA only, for tests of an
	// imager agent against a controller of their own.
	NoController bool
	// Log is the controller's log; discarded when nil.
	Log *slog.Logger
	// Controller, when set, changes the config of every controller the
	// farm starts, after the options above set it: for what they do not
	// name.
	Controller func(*controller.Config)
}

// Farm is a farm running in the test's process until the test ends.
type Farm struct {
	NATS *server.Server
	// JS is a JetStream handle on the farm's NATS, which a test uses as
	// an admin on the NATS host can.
	JS       jetstream.JetStream
	Store    *Store // the catalog's
	StoreURL string // the catalog's store, as the CLI's --store takes it
	Catalog  *catalog.Catalog
	PKI      *testenv.PKI // the farm CA
	// Digest is img:1's manifest digest, with Options.PushImage.
	Digest string
	// Addr is the controller's address; "" with NoController.
	Addr string
	// AdminToken is the secret of an admin token, "admin".
	AdminToken string
	// API is the client API as the admin, with TLS and no client
	// certificate unless Plaintext.
	API imagefarmv1.ImageFarmServiceClient

	opts Options
}

// Store is a file store that counts the listings of every ref, the
// catalog watcher's scans, so that a test can wait for scans that follow a
// change instead of sleeping.
type Store struct {
	storage.Store
	listed atomic.Int64
}

// List counts the listings of refs/.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	err := s.Store.List(ctx, prefix, fn)
	if prefix == "refs/" {
		s.listed.Add(1)
	}
	return err
}

// Start starts a farm that runs until the test ends.
func Start(t testing.TB, opts Options) *Farm {
	t.Helper()
	srv, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fs, err := storage.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &Farm{NATS: srv, JS: js, Store: &Store{Store: fs}, StoreURL: "file://" + dir, PKI: testenv.NewPKI(t), opts: opts}
	if f.Catalog, err = catalog.New(f.Store, catalog.Options{}); err != nil {
		t.Fatal(err)
	}
	if opts.PushImage {
		res, err := f.Catalog.Push(t.Context(), bytes.NewReader(Image), int64(len(Image)), catalog.PushOptions{Name: "img", Version: "1", Kind: catalog.KindDisk})
		if err != nil {
			t.Fatal(err)
		}
		f.Digest = res.Digest
	}
	if opts.NoController {
		return f
	}
	f.Addr = f.StartController(t, nil).Addr
	f.AdminToken = f.Token(t, "admin", imagefarmv1.Role_ROLE_ADMIN)
	f.API = imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(f.AdminToken)))
	return f
}

// Controller is one controller of the farm, running in the test's process.
type Controller struct {
	Addr string
	stop func()
}

// Stop stops the controller and fails the test if it did not stop
// cleanly; the test's end stops it too.
func (c *Controller) Stop() { c.stop() }

// StartController starts a controller on the farm's NATS and catalog, as
// Options say, after edit (when not nil) changed its config further; it
// returns once the controller serves, and stops it when the test ends.
func (f *Farm) StartController(t testing.TB, edit func(*controller.Config)) *Controller {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := controller.Config{NATSURL: f.NATS.ClientURL(), Listener: lis, Catalog: f.Catalog, HeartbeatTTL: f.opts.HeartbeatTTL,
		CatalogScanInterval: f.opts.CatalogScanInterval, TrustedKeys: f.opts.TrustedKeys, Log: f.opts.Log}
	if f.opts.Plaintext {
		cfg.Insecure = true
	} else {
		cfg.TLS, cfg.ClientCAs = f.PKI.ServerTLS(t), f.PKI.Pool()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	for _, edit := range []func(*controller.Config){f.opts.Controller, edit} {
		if edit != nil {
			edit(&cfg)
		}
	}
	c, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller Run = %v", err)
		}
	})
	t.Cleanup(stop)
	serving := make(chan struct{})
	go func() { c.Addr(ctx); close(serving) }()
	select {
	case <-serving:
	case err := <-done:
		done <- err // for stop
		t.Fatalf("controller Run = %v before it served", err)
	}
	return &Controller{Addr: lis.Addr().String(), stop: stop}
}

// Token writes a token to the farm's NATS, as an admin on the NATS host
// can, without an audit record, and returns its secret.
func (f *Farm) Token(t testing.TB, name string, role imagefarmv1.Role) string {
	t.Helper()
	st, err := tokens.Open(t.Context(), f.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.Create(t.Context(), name, role, "test")
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// Bearer sends the token secret with every call.
func (f *Farm) Bearer(secret string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(tokens.Bearer{Secret: secret, Plaintext: f.opts.Plaintext})
}

// ClientCreds are a client's transport credentials: TLS verifying the
// controller against the farm CA, with the certificate of node when node
// is not "", or plaintext with Options.Plaintext.
func (f *Farm) ClientCreds(t testing.TB, node string) credentials.TransportCredentials {
	t.Helper()
	if f.opts.Plaintext {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(f.PKI.ClientTLS(t, node))
}

// Dial connects to the farm's controller with creds until the test ends.
func (f *Farm) Dial(t testing.TB, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	return DialAt(t, f.Addr, creds, opts...)
}

// DialAt connects to the controller at addr with creds until the test
// ends.
func DialAt(t testing.TB, addr string, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(creds))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ImagerClient is an imager's connection to the controller, with the
// certificate of node.
func (f *Farm) ImagerClient(t testing.TB, node string) imagefarmv1.ImagerServiceClient {
	t.Helper()
	return imagefarmv1.NewImagerServiceClient(f.Dial(t, f.ClientCreds(t, node)))
}

// WaitScans waits until n catalog scans that started after the call have
// ended, with whatever they recorded: the scan running at the call may
// have listed before it, and a scan's records are written before the next
// one lists.
func (f *Farm) WaitScans(t testing.TB, n int64) {
	t.Helper()
	want := f.Store.listed.Load() + 1 + n + 1
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d more catalog scans", n), func() bool { return f.Store.listed.Load() >= want })
}
