package controller

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

func testCatalog(t *testing.T, versions ...string) *catalog.Catalog {
	t.Helper()
	s, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(s, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		data := "image " + v
		if _, err := c.Push(t.Context(), strings.NewReader(data), int64(len(data)), catalog.PushOptions{Name: "uni", Version: v, Kind: catalog.KindDisk, Channels: channelsFor(v)}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func channelsFor(v string) []string {
	if v == "2" {
		return []string{"stable"}
	}
	return nil
}

func TestListAndGetImages(t *testing.T) {
	s := images{cat: testCatalog(t, "1", "2", "3")}
	var got []string
	token := ""
	for {
		resp, err := s.ListImages(t.Context(), &imagefarmv1.ListImagesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range resp.GetImages() {
			got = append(got, img.GetVersion())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if strings.Join(got, ",") != "1,2,3" {
		t.Errorf("paged ListImages = %v, want 1,2,3", got)
	}
	resp, err := s.GetImage(t.Context(), &imagefarmv1.GetImageRequest{Ref: "uni:stable"})
	if err != nil || resp.GetImage().GetVersion() != "2" || resp.GetImage().GetKind() != imagefarmv1.ImageKind_IMAGE_KIND_DISK || resp.GetImage().GetChannels()[0] != "stable" {
		t.Errorf("GetImage(uni:stable) = %v, %v", resp, err)
	}
	for _, tc := range []struct {
		ref  string
		code codes.Code
	}{{"uni:9", codes.NotFound}, {"../x:1", codes.InvalidArgument}, {"", codes.InvalidArgument}} {
		_, err := s.GetImage(t.Context(), &imagefarmv1.GetImageRequest{Ref: tc.ref})
		err = toStatus(err) // as statusUnary does
		if status.Code(err) != tc.code || status.Convert(err).Message() == "" {
			t.Errorf("GetImage(%q) = %v, want %v with a message", tc.ref, err, tc.code)
		}
	}
	if _, err := s.ListImages(t.Context(), &imagefarmv1.ListImagesRequest{PageToken: "x"}); status.Code(toStatus(err)) != codes.InvalidArgument {
		t.Errorf("ListImages with a bad token = %v, want InvalidArgument", err)
	}
}

// TestStatusCodes checks the code each domain error gets, and that its
// message is what a person reads: an explained sentinel's text goes, any
// other's package tag goes.
func TestStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("drive n1/zz: node n1 has no drive \"zz\": %w", scheduler.ErrUnknownDrive), codes.NotFound, `drive n1/zz: node n1 has no drive "zz"`},
		{fmt.Errorf("count 0: a standing order writes 1 to 100000 drives: %w", scheduler.ErrBadCount), codes.InvalidArgument,
			"count 0: a standing order writes 1 to 100000 drives"},
		{fmt.Errorf("drive n1/a: %w", scheduler.ErrDriveBusy), codes.FailedPrecondition, "drive n1/a"},
		{fmt.Errorf("%w: x:1 (list images with `imagefarm image ls`)", catalog.ErrNotFound), codes.NotFound,
			"image not found: x:1 (list images with `imagefarm image ls`)"},
		{fmt.Errorf("x: %w", storage.ErrUnreachable), codes.Unavailable, "x: unreachable"},
		{fmt.Errorf("%w: give its S3 user controller-policy.json: %w", storage.ErrAccessDenied, errStoreReadOnly), codes.FailedPrecondition,
			"access denied: give its S3 user controller-policy.json"},
		{state.ErrNotFound, codes.NotFound, "not found"},
		{fmt.Errorf("%w: job id \"../x\" has '.': use ...", state.ErrInvalidID), codes.InvalidArgument, `job id "../x" has '.': use ...`},
		{errors.New("boom"), codes.Internal, "boom"},
	} {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("toStatus(%v) = %v %q, want %v %q", tc.err, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
}

// TestListImagesPagesAcrossInserts: images pushed between two pages, one
// sorting before the page boundary and one after, leave the listing whole:
// every image there at the start comes exactly once.
func TestListImagesPagesAcrossInserts(t *testing.T) {
	cat := testCatalog(t, "1", "2", "3", "4")
	s := images{cat: cat}
	var got []string
	token := ""
	for page := 0; ; page++ {
		resp, err := s.ListImages(t.Context(), &imagefarmv1.ListImagesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range resp.GetImages() {
			got = append(got, img.GetName()+":"+img.GetVersion())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if page == 10 {
			t.Fatalf("paged ListImages with inserts still going after %d pages: %v", page, got)
		}
		for _, name := range []string{"aaa", "zzz"} { // before and after the boundary
			data := fmt.Sprintf("image %s %d", name, page)
			if _, err := cat.Push(t.Context(), strings.NewReader(data), int64(len(data)),
				catalog.PushOptions{Name: name, Version: fmt.Sprint(page), Kind: catalog.KindDisk}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{"uni:1", "uni:2", "uni:3", "uni:4"}
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("paged ListImages with inserts = %v: %s listed %d times, want once", got, w, seen[w])
		}
	}
	for g, n := range seen {
		if n > 1 {
			t.Errorf("paged ListImages with inserts = %v: %s repeated", got, g)
		}
	}
}

// TestEveryKindHasAProtoKind: every kind the catalog holds is named in
// the API, so ListImages never shows one as unspecified.
func TestEveryKindHasAProtoKind(t *testing.T) {
	for _, k := range catalog.Kinds {
		if kindToProto(k) == imagefarmv1.ImageKind_IMAGE_KIND_UNSPECIFIED {
			t.Errorf("kindToProto(%s) = unspecified: add IMAGE_KIND_%s to image.proto", k, strings.ToUpper(string(k)))
		}
	}
}
