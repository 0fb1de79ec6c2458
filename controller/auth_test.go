package controller_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestImagerRefusalsSayWhy checks what an imager refused for its
// certificate is told, and that a refused Hello stores nothing: the
// authorization matrix (authz_test.go) checks the codes.
func TestImagerRefusalsSayWhy(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	expired := pki.Request{Kind: pki.KindNode, Name: "a", NotBefore: time.Now().Add(-48 * time.Hour), ValidFor: time.Hour}
	cert, key := f.PKI.Issue(t, expired)
	expiredTLS, err := pki.ClientConfig(f.PKI.CAFile(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client imagefarmv1.ImagerServiceClient
		code   codes.Code
		msg    string
	}{
		{"no certificate", imagefarmv1.NewImagerServiceClient(f.Dial(t, f.ClientCreds(t, ""))),
			codes.Unauthenticated, `an imager must present its node certificate (imagefarm ca issue --node "a")`},
		{"an expired certificate", imagefarmv1.NewImagerServiceClient(f.Dial(t, credentials.NewTLS(expiredTLS))),
			codes.Unauthenticated, "certificate has expired"},
		{"node b's certificate", f.ImagerClient(t, "b"),
			codes.PermissionDenied, `hello for node "a" with the certificate of node "b": a node reports only for itself`},
	} {
		err := helloErr(t, tc.client, "a")
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: Hello for node a = %v, want %v with %q", tc.name, err, tc.code, tc.msg)
		}
	}
	nodes, err := f.API.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
	if err != nil || len(nodes.GetNodes()) != 0 {
		t.Errorf("ListNodes() after refused Hellos = %v, %v; want none", nodes.GetNodes(), err)
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
