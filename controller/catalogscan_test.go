package controller_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/controller/refclient"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// scanEvery is the catalog watcher's interval in these tests.
const scanEvery = 200 * time.Millisecond

// pushVersion pushes name:version with refs and returns its digest.
func pushVersion(t *testing.T, f *farm.Farm, refs catalog.RefWriter, name, version string) string {
	t.Helper()
	img := bytes.Repeat([]byte("imagefarm "+version), 1000)
	res, err := f.Catalog.Push(t.Context(), bytes.NewReader(img), int64(len(img)), catalog.PushOptions{Name: name, Version: version, Kind: catalog.KindDisk, Refs: refs})
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest
}

// unrecorded returns the summaries and digests of the trail's
// image.unrecorded records, checking the chain.
func unrecorded(t *testing.T, api imagefarmv1.ImageFarmServiceClient) (sums, digests []string) {
	t.Helper()
	recs, err := trail(t, api)
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	for _, r := range recs {
		if r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_UNRECORDED {
			sums, digests = append(sums, summary(r)), append(digests, r.GetImageDigest())
		}
	}
	return sums, digests
}

// TestCatalogWatcherRecordsUnreportedChanges: the images already in the
// catalog and the changes made through the controller are not flagged; a
// push, a channel move and a removal made with the store's keys, not
// through the controller, are each recorded once as image.unrecorded, and
// the chain still verifies.
func TestCatalogWatcherRecordsUnreportedChanges(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, CatalogScanInterval: scanEvery, PushImage: true})
	refs, err := catalogrefs.Open(t.Context(), f.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the catalog refs seeded", func() bool { _, seeded, err := refs.All(t.Context()); return err == nil && seeded })

	api := refclient.New(f.API) // changes through the controller
	d2 := pushVersion(t, f, api, "img", "2")
	if err := api.SetChannel(t.Context(), "img", "stable", d2); err != nil {
		t.Fatal(err)
	}
	pushVersion(t, f, api, "img", "4")
	if _, err := api.Remove(t.Context(), catalog.Ref{Name: "img", Tag: "4"}); err != nil {
		t.Fatal(err)
	}
	f.WaitScans(t, 2) // scans that could wrongly flag them

	start := time.Now()
	d3 := pushVersion(t, f, f.Catalog, "img", "3") // with the store's keys
	if err := f.Catalog.SetChannel(t.Context(), "img", "stable", d3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Catalog.Remove(t.Context(), catalog.Ref{Name: "img", Tag: "1"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "three image.unrecorded records", func() bool { sums, _ := unrecorded(t, f.API); return len(sums) >= 3 })
	t.Logf("recorded %v after the changes (scan interval %v)", time.Since(start).Round(time.Millisecond), scanEvery)
	f.WaitScans(t, 2) // scans that could record them again

	sums, digests := unrecorded(t, f.API)
	want := []string{
		"IMAGE_UNRECORDED controller image=img:1 message=img:1 was removed without a recorded change",
		"IMAGE_UNRECORDED controller image=img:3 message=img:3 appeared without a recorded change",
		"IMAGE_UNRECORDED controller image=img:stable message=img:stable moved from " + d2 + " to " + d3 + " without a recorded change",
	}
	if !slices.Equal(sortedCopy(sums), want) {
		t.Errorf("image.unrecorded records = %q, want %q", sums, want)
	}
	if wantDigests := []string{f.Digest, d3, d3}; !slices.Equal(sortedCopy(digests), sortedCopy(wantDigests)) {
		t.Errorf("image.unrecorded digests = %q, want %q", digests, wantDigests)
	}
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

// TestCatalogWatcherOutlivesUnreadableCatalog: while the catalog cannot be
// listed (a ref holds no digest) the scans fail and are retried; the
// controller keeps serving, and once the catalog reads again an unreported
// change is recorded. A ref to a manifest that is not there does not stop
// the scans: it is an unreported change like any other.
func TestCatalogWatcherOutlivesUnreadableCatalog(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, CatalogScanInterval: scanEvery, PushImage: true})
	refs, err := catalogrefs.Open(t.Context(), f.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the catalog refs seeded", func() bool { _, seeded, err := refs.All(t.Context()); return err == nil && seeded })
	garbage := "not a digest\n"
	if err := f.Catalog.Store().Put(t.Context(), "refs/img/versions/9", strings.NewReader(garbage), int64(len(garbage))); err != nil {
		t.Fatal(err)
	}
	d3 := pushVersion(t, f, f.Catalog, "img", "3")
	f.WaitScans(t, 3) // failing scans, which could wrongly record img:3
	if sums, _ := unrecorded(t, f.API); len(sums) != 0 {
		t.Fatalf("image.unrecorded records while the catalog cannot be listed: %q", sums)
	}
	if _, err := f.API.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{}); err != nil {
		t.Errorf("the controller stopped serving while its scans failed: %v", err)
	}
	missing := "sha256:" + strings.Repeat("0", 64) + "\n"
	if err := f.Catalog.Store().Put(t.Context(), "refs/img/versions/9", strings.NewReader(missing), int64(len(missing))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "img:3 and img:9 recorded", func() bool { sums, _ := unrecorded(t, f.API); return len(sums) == 2 })
	sums, digests := unrecorded(t, f.API)
	for i, want := range map[string]string{"img:3": d3, "img:9": strings.TrimSpace(missing)} {
		if j := slices.IndexFunc(sums, func(s string) bool { return strings.Contains(s, "image="+i+" ") }); j < 0 || digests[j] != want {
			t.Errorf("image.unrecorded records %q with digests %q, want %s at %s", sums, digests, i, want)
		}
	}
}
