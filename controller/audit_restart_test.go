package controller_test

import (
	"slices"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// runController runs another controller on f's NATS server and catalog
// until stop is called.
func runController(t *testing.T, f *farm.Farm) (api imagefarmv1.ImageFarmServiceClient, stop func()) {
	t.Helper()
	c := f.StartController(t, nil)
	conn := farm.DialAt(t, c.Addr, f.ClientCreds(t, ""), f.Bearer(f.AdminToken))
	return imagefarmv1.NewImageFarmServiceClient(conn), c.Stop
}

func TestAuditChainContinuesAcrossControllers(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	recordTag(t, f.API, "a1")
	restarted, stop := runController(t, f)
	recordTag(t, restarted, "a2")
	stop()
	// f's controller last saw record 1: it must chain after record 2, not fork.
	recordTag(t, f.API, "a3")
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
