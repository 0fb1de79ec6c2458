package controller_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/controller"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// runController runs another controller on f's NATS server and catalog
// until stop is called.
func runController(t *testing.T, f *farm) (api imagefarmv1.ImageFarmServiceClient, stop func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := controller.New(controller.Config{NATSURL: f.js.Conn().ConnectedUrl(), Listener: lis, TLS: f.pki.ServerTLS(t),
		ClientCAs: f.pki.Pool(), Catalog: f.cat, CatalogScanInterval: -1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	other := &farm{addr: lis.Addr().String()}
	return imagefarmv1.NewImageFarmServiceClient(other.dial(t, credentials.NewTLS(f.pki.ClientTLS(t, "")), f.bearer())), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller Run = %v", err)
		}
	}
}

func TestAuditChainContinuesAcrossControllers(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	recordTag(t, f.api, "a1")
	restarted, stop := runController(t, f)
	recordTag(t, restarted, "a2")
	stop()
	// f's controller last saw record 1: it must chain after record 2, not fork.
	recordTag(t, f.api, "a3")
	again, stop := runController(t, f)
	defer stop()
	recordTag(t, again, "a4")
	recs, err := trail(t, again)
	if err != nil {
		t.Fatalf("the trail does not verify: %v", err)
	}
	var refs []string
	for _, r := range recs {
		refs = append(refs, r.GetImageRef())
	}
	if want := []string{"img:a1", "img:a2", "img:a3", "img:a4"}; !slices.Equal(refs, want) {
		t.Errorf("records of %v, want %v", refs, want)
	}
}
