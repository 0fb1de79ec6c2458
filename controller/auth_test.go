package controller_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/controller"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

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
