package controller_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestAuthorizationMatrix calls ImagerService.Connect with a Hello for node
// a, and ImageFarmService.ListNodes, with each kind of credential: each is
// allowed or refused with exactly its code, and a refused Hello stores
// nothing.
func TestAuthorizationMatrix(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	node := func(name string) pki.Request { return pki.Request{Kind: pki.KindNode, Name: name} }
	expired := node("a")
	expired.NotBefore, expired.ValidFor = time.Now().Add(-48*time.Hour), time.Hour
	// withCert verifies the controller against the farm CA and presents
	// the certificate issued for r by ca.
	withCert := func(ca *testenv.PKI, r pki.Request) credentials.TransportCredentials {
		cert, key := ca.Issue(t, r)
		cfg, err := pki.ClientConfig(f.pki.CAFile(), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(cfg)
	}
	ok, unavailable, unauthenticated, denied := codes.OK, codes.Unavailable, codes.Unauthenticated, codes.PermissionDenied
	for _, tc := range []struct {
		name           string
		creds          credentials.TransportCredentials
		connect, nodes codes.Code
		msg            string // in Connect's error
	}{
		{"none: plaintext against TLS", insecure.NewCredentials(), unavailable, unavailable, ""},
		{"TLS without a certificate", credentials.NewTLS(f.pki.ClientTLS(t, "")), unauthenticated, ok, "imagefarm ca issue --node"},
		{"another CA's certificate for node a", withCert(testenv.NewPKI(t), node("a")), unauthenticated, unauthenticated, "unknown authority"},
		{"an expired certificate of node a", withCert(f.pki, expired), unauthenticated, unauthenticated, "expired"},
		{"the certificate of node b", withCert(f.pki, node("b")), denied, ok, `hello for node "a" with the certificate of node "b"`},
		{"a client's certificate", withCert(f.pki, pki.Request{Kind: pki.KindClient, Name: "alice"}), denied, ok, `client "alice", not of a node`},
		{"the controller's certificate", withCert(f.pki, pki.Request{Kind: pki.KindServer, Hosts: []string{"127.0.0.1"}}), unauthenticated, unauthenticated, "usage"},
		{"node a's certificate", withCert(f.pki, node("a")), ok, ok, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := f.dial(t, tc.creds)
			err := helloErr(t, imagefarmv1.NewImagerServiceClient(conn), "a")
			if status.Code(err) != tc.connect || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("Connect() = %v, want %v with %q", err, tc.connect, tc.msg)
			}
			_, err = imagefarmv1.NewImageFarmServiceClient(conn).ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
			if status.Code(err) != tc.nodes {
				t.Errorf("ListNodes() = %v, want %v", err, tc.nodes)
			}
			nodes, err := f.api.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
			if err != nil || (len(nodes.GetNodes()) > 0) != (tc.connect == ok) {
				t.Errorf("after the Hello the farm has nodes %v, %v; want node a only after a Hello allowed", nodes.GetNodes(), err)
			}
		})
	}
}

// helloErr sends a Hello for node on a new imager stream and returns the
// error it is refused with, or nil for a HelloAck.
func helloErr(t *testing.T, client imagefarmv1.ImagerServiceClient, node string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := client.Connect(ctx)
	if err != nil {
		return err
	}
	stream.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: &imagefarmv1.Hello{NodeId: node, InstanceId: "i-" + node}}})
	m, err := stream.Recv()
	if err == nil && m.GetHelloAck() == nil {
		t.Fatalf("Hello answered %v, want HelloAck or an error", m)
	}
	return err
}

func TestControllerNeedsTLSOrInsecure(t *testing.T) {
	cat, _ := catalog.New(nil, catalog.Options{})
	cfg := controller.Config{NATSURL: "nats://127.0.0.1:4222", Listen: "127.0.0.1:0", Catalog: cat, Log: slog.New(slog.DiscardHandler)}
	if _, err := controller.New(cfg); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("New(neither TLS nor Insecure) = %v, want an error naming TLS", err)
	}
	cfg.Insecure = true
	if _, err := controller.New(cfg); err != nil {
		t.Errorf("New(Insecure) = %v", err)
	}
}
