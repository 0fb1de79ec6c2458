package controller_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// uploadOnly is a RefWriter that writes nothing: a push through it stores
// chunks and a manifest, as a push does before it asks the controller.
type uploadOnly struct{}

func (uploadOnly) AddSignature(context.Context, string, catalog.PublicKey, []byte) error { return nil }
func (uploadOnly) CreateVersion(context.Context, string, string, string) error           { return nil }
func (uploadOnly) SetChannel(context.Context, string, string, string) error              { return nil }

// upload stores the chunks and the manifest of name:version, no ref, and
// returns its digest and manifest.
func upload(t *testing.T, f *farm.Farm, name, version string) (string, *catalog.Manifest) {
	t.Helper()
	img := bytes.Repeat([]byte("image "+name+":"+version), 5000)
	res, err := f.Catalog.Push(t.Context(), bytes.NewReader(img), int64(len(img)),
		catalog.PushOptions{Name: name, Version: version, Kind: catalog.KindDisk, Refs: uploadOnly{}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest, res.Manifest
}

// refsAndSignatures is every object under refs/ and signatures/, key to content.
func refsAndSignatures(t *testing.T, f *farm.Farm) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, prefix := range []string{"refs/", "signatures/"} {
		err := f.Catalog.Store().List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
			rc, err := f.Catalog.Store().Open(t.Context(), oi.Key, 0, -1)
			if err != nil {
				return err
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			out[oi.Key] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// imageRecords returns the summaries of the trail's image records.
func imageRecords(t *testing.T, api imagefarmv1.ImageFarmServiceClient) []string {
	t.Helper()
	recs, err := trail(t, api)
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	var out []string
	for _, r := range recs {
		if strings.HasPrefix(r.GetAction().String(), "AUDIT_ACTION_IMAGE_") {
			out = append(out, summary(r))
		}
	}
	return out
}

// as is the client API with a token of role, stored without a record.
func as(t *testing.T, f *farm.Farm, name string, role imagefarmv1.Role) imagefarmv1.ImageFarmServiceClient {
	t.Helper()
	return imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""),
		f.Bearer(f.Token(t, name, role))))
}

// TestImageRefChangesNeedAnAdmin: a viewer and an operator can neither
// create a version, nor move a channel, nor remove a ref, nor sign an
// image: each call is refused PermissionDenied naming the admin role, and
// the store and the trail are unchanged. An admin's calls change the
// store and are each in the trail, by the admin.
func TestImageRefChangesNeedAnAdmin(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	digest2, m2 := upload(t, f, "img", "2")
	key, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func(imagefarmv1.ImageFarmServiceClient) error
	}{
		{"SignImage", func(api imagefarmv1.ImageFarmServiceClient) error {
			_, err := api.SignImage(t.Context(), &imagefarmv1.SignImageRequest{ImageDigest: digest2, PublicKey: key.Public("").Key,
				Signature: key.SignImage(m2, digest2)})
			return err
		}},
		{"CreateImageVersion", func(api imagefarmv1.ImageFarmServiceClient) error {
			_, err := api.CreateImageVersion(t.Context(), &imagefarmv1.CreateImageVersionRequest{ImageRef: "img:2", ImageDigest: digest2})
			return err
		}},
		{"SetImageChannel", func(api imagefarmv1.ImageFarmServiceClient) error {
			_, err := api.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: "img:1", Channel: "pilot"})
			return err
		}},
		{"RemoveImageRef", func(api imagefarmv1.ImageFarmServiceClient) error {
			_, err := api.RemoveImageRef(t.Context(), &imagefarmv1.RemoveImageRefRequest{ImageRef: "img:1"})
			return err
		}},
	}
	before := refsAndSignatures(t, f)
	for _, role := range []imagefarmv1.Role{imagefarmv1.Role_ROLE_VIEWER, imagefarmv1.Role_ROLE_OPERATOR} {
		api := as(t, f, "as-"+role.String(), role)
		for _, c := range calls {
			err := c.call(api)
			if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), c.name+" needs the admin role") {
				t.Errorf("%s as %v = %v, want PermissionDenied naming the admin role", c.name, role, err)
			}
		}
	}
	if after := refsAndSignatures(t, f); !maps.Equal(after, before) {
		t.Errorf("refused calls changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if recs := imageRecords(t, f.API); len(recs) != 0 {
		t.Errorf("refused calls recorded %q", recs)
	}

	for _, c := range calls {
		if err := c.call(f.API); err != nil {
			t.Fatalf("%s as an admin = %v", c.name, err)
		}
	}
	want := []string{
		"IMAGE_SIGN user:admin image=img:2 message=key " + key.ID,
		"IMAGE_PUSH user:admin image=img:2",
		"IMAGE_TAG user:admin image=img:pilot",
		"IMAGE_RM user:admin image=img:1",
	}
	if got := imageRecords(t, f.API); !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	images, err := f.Catalog.List(t.Context(), "img")
	if err != nil || len(images) != 2 || images[0].Version != "" || !slices.Equal(images[0].Channels, []string{"pilot"}) ||
		images[1].Version != "2" || images[1].Digest != digest2 {
		t.Errorf("catalog after the admin's calls = %+v, %v; want img:pilot at the removed img:1, and img:2", images, err)
	}
	if _, err := f.Catalog.Verify(t.Context(), m2, digest2, catalog.NewKeyRing(key.Public(""))); err != nil {
		t.Errorf("img:2's signature after SignImage: %v", err)
	}
}

// TestRefusedImageRefChangesChangeNothing: ref changes the catalog
// forbids, and requests that are wrong in themselves, are refused with a
// code and a message naming what was wrong, and change neither the store
// nor the trail.
func TestRefusedImageRefChangesChangeNothing(t *testing.T) {
	trusted, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := catalog.GenerateKey()
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true,
		TrustedKeys: catalog.NewKeyRing(trusted.Public("farm"))})
	digestStable, _ := upload(t, f, "img", "stable")
	digest2, m2 := upload(t, f, "img", "2")
	m1, err := f.Catalog.ManifestByDigest(t.Context(), f.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.API.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: "img:1", Channel: "stable"}); err != nil {
		t.Fatal(err)
	}
	missing := "sha256:" + strings.Repeat("ab", 32)
	create := func(ref, digest string) error {
		_, err := f.API.CreateImageVersion(t.Context(), &imagefarmv1.CreateImageVersionRequest{ImageRef: ref, ImageDigest: digest})
		return err
	}
	tag := func(ref, channel string) error {
		_, err := f.API.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: ref, Channel: channel})
		return err
	}
	remove := func(ref string) error {
		_, err := f.API.RemoveImageRef(t.Context(), &imagefarmv1.RemoveImageRefRequest{ImageRef: ref})
		return err
	}
	sign := func(digest string, k *catalog.SigningKey, sig []byte) error {
		_, err := f.API.SignImage(t.Context(), &imagefarmv1.SignImageRequest{ImageDigest: digest, PublicKey: k.Public("").Key, Signature: sig})
		return err
	}
	before, records := refsAndSignatures(t, f), imageRecords(t, f.API)
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"version that exists", create("img:1", f.Digest), codes.AlreadyExists, "img:1 was pushed by someone else"},
		{"version named like a channel", create("img:stable", digestStable), codes.FailedPrecondition, "img:stable is a channel"},
		{"version of another manifest", create("img:3", digest2), codes.InvalidArgument, "is the image img:2, not img:3"},
		{"version of a manifest not stored", create("img:3", missing), codes.NotFound, "manifest " + missing},
		{"version by digest", create("img@"+digest2, digest2), codes.InvalidArgument, "not a digest"},
		{"version with a bad ref", create("../img:2", digest2), codes.InvalidArgument, `image name "../img" has '/'`},
		{"version with a 1 MiB digest", create("img:2", strings.Repeat("x", 1<<20)), codes.InvalidArgument, "is 1048576 bytes long, the limit is 71"},
		{"channel named like a version", tag("img@"+f.Digest, "1"), codes.FailedPrecondition, "img:1 is a version"},
		{"channel of an image not there", tag("ghost:1", "stable"), codes.NotFound, "ghost:1"},
		{"channel at another image's digest", tag("other@"+f.Digest, "stable"), codes.InvalidArgument, "is the image img:1"},
		{"channel with a bad name", tag("img:1", "a/b"), codes.InvalidArgument, `channel "a/b" has '/'`},
		{"removal of what is not there", remove("img:9"), codes.NotFound, "img:9"},
		{"signature of another image", sign(digest2, trusted, trusted.SignImage(m1, f.Digest)), codes.InvalidArgument, "does not verify"},
		{"signature by an untrusted key", sign(digest2, stranger, stranger.SignImage(m2, digest2)), codes.FailedPrecondition,
			"key " + stranger.ID + " is not one of the controller's trusted keys (" + trusted.ID + ")"},
		{"signature that is no ed25519 signature", sign(digest2, trusted, []byte("sig")), codes.InvalidArgument, "signature of 3"},
	} {
		if st, _ := status.FromError(tc.err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, tc.err, tc.code, tc.msg)
		}
	}
	if after := refsAndSignatures(t, f); !maps.Equal(after, before) {
		t.Errorf("refused calls changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if got := imageRecords(t, f.API); !slices.Equal(got, records) {
		t.Errorf("refused calls recorded %q", got[len(records):])
	}
	if err := sign(digest2, trusted, trusted.SignImage(m2, digest2)); err != nil {
		t.Errorf("a trusted key's signature = %v", err)
	}
}
