package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// runSplit is run with stdout and stderr apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// as runs imagefarm against f's controller and store with token.
func as(t *testing.T, f *farm.Farm, token string, args ...string) (string, string, error) {
	t.Helper()
	return runSplit(t, append([]string{"--insecure", "--controller", f.Addr, "--store", f.StoreURL, "--token", token}, args...)...)
}

// refs is every version and channel of the catalog, "name:tag digest".
func refs(t *testing.T, f *farm.Farm) []string {
	t.Helper()
	images, err := f.Catalog.Refs(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, img := range images {
		for _, tag := range append(slices.Clone(img.Channels), img.Version) {
			if tag != "" {
				out = append(out, img.Name+":"+tag+" "+img.Digest)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestImageRefChangesGoThroughTheController: with a controller, image
// push, tag, sign and rm change refs through it: a viewer's are refused,
// naming the admin role, with the catalog's refs unchanged (even with
// write access to the store); an admin's are made, recorded by the admin,
// and --json says so with the records' sequences.
func TestImageRefChangesGoThroughTheController(t *testing.T) {
	f := farm.Start(t, farm.Options{Plaintext: true})
	viewer := f.Token(t, "viewer", imagefarmv1.Role_ROLE_VIEWER)
	keys := t.TempDir()
	mustRun(t, "key", "init", "--out", keys)
	signKey := filepath.Join(keys, "signing.key")
	img := writeDiskImage(t, 2<<20, 9)

	out, _, err := as(t, f, f.AdminToken, "image", "push", "demo-disk:1.0", img, "--channel", "stable", "--sign-key", signKey, "--json")
	var push struct {
		Digest  string   `json:"digest"`
		Audited bool     `json:"audited"`
		Seqs    []uint64 `json:"audit_sequences"`
	}
	if err != nil || json.Unmarshal([]byte(out), &push) != nil || !push.Audited || len(push.Seqs) != 3 {
		t.Fatalf("admin push --json = %s, %v; want it audited with 3 records (sign, push, tag)", out, err)
	}
	before := refs(t, f)

	for _, args := range [][]string{
		{"image", "tag", "demo-disk:1.0", "pilot"},
		{"image", "rm", "demo-disk:stable"},
		{"image", "sign", "demo-disk:1.0", "--sign-key", signKey},
		{"image", "push", "demo-disk:2.0", img},
	} {
		_, _, err := as(t, f, viewer, args...)
		if err == nil || !strings.Contains(err.Error(), "needs the admin role") || !strings.Contains(err.Error(), `token "viewer" is a viewer`) {
			t.Errorf("%s as a viewer = %v, want refused for needing the admin role", strings.Join(args[:2], " "), err)
		}
	}
	if after := refs(t, f); !slices.Equal(after, before) {
		t.Errorf("a viewer's refused changes changed the refs:\nbefore %q\nafter  %q", before, after)
	}

	var change changeJSON
	out, _, err = as(t, f, f.AdminToken, "image", "tag", "demo-disk:1.0", "pilot", "--json")
	if err != nil || json.Unmarshal([]byte(out), &change) != nil || change.Ref != "demo-disk:pilot" || change.Digest != push.Digest ||
		!change.Audited || change.AuditSequence != 4 {
		t.Errorf("admin tag --json = %s, %v; want demo-disk:pilot at %s, audit record 4", out, err, push.Digest)
	}
	out, _, err = as(t, f, f.AdminToken, "image", "sign", "demo-disk:pilot", "--sign-key", signKey, "--json")
	if err != nil || json.Unmarshal([]byte(out), &change) != nil || change.Ref != "demo-disk:1.0" || change.KeyID == "" || change.AuditSequence != 5 {
		t.Errorf("admin sign --json = %s, %v; want demo-disk:1.0 signed, audit record 5", out, err)
	}
	var rm struct {
		Removed []changeJSON `json:"removed"`
	}
	out, _, err = as(t, f, f.AdminToken, "image", "rm", "demo-disk@"+push.Digest, "--json")
	if err != nil || json.Unmarshal([]byte(out), &rm) != nil || len(rm.Removed) != 3 || rm.Removed[2].Ref != "demo-disk:stable" || rm.Removed[2].AuditSequence != 8 {
		t.Errorf("admin rm --json = %s, %v; want 3 refs removed, recorded as 6 to 8", out, err)
	}

	out, _, err = as(t, f, viewer, "audit", "--since", "all")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"image.sign  user:admin", "image.push  user:admin", "image.tag   user:admin", "image.rm    user:admin  demo-disk:stable"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit printed\n%s\nwithout %q", out, want)
		}
	}
}

// TestImageRefChangesWithoutAControllerSayUnaudited: with --store only, as
// on a dev laptop, push, tag, sign and rm change the store themselves and
// say on stderr that the change is unaudited; with --json, the result
// says "audited": false.
func TestImageRefChangesWithoutAControllerSayUnaudited(t *testing.T) {
	store := "file://" + t.TempDir()
	keys := t.TempDir()
	mustRun(t, "key", "init", "--out", keys)
	img := writeDiskImage(t, 1<<20, 10)
	signKey := filepath.Join(keys, "signing.key")
	for i, args := range [][]string{
		{"image", "push", "lab:1", img, "--sign-key", signKey},
		{"image", "tag", "lab:1", "stable"},
		{"image", "sign", "lab:1", "--sign-key", signKey},
		{"image", "rm", "lab:stable"},
		{"image", "push", "lab:2", img, "--sign-key", signKey, "--json"},
		{"image", "tag", "lab:2", "stable", "--json"},
		{"image", "sign", "lab:2", "--sign-key", signKey, "--json"},
		{"image", "rm", "lab:stable", "--json"},
	} {
		what := strings.Join(args[:2], " ")
		out, stderr, err := runSplit(t, append([]string{"--store", store}, args...)...)
		switch {
		case err != nil:
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr)
		case i < 4 && !strings.Contains(stderr, "this change is made straight in the store and is unaudited"):
			t.Errorf("%s printed %q on stderr, want it to say the change is unaudited", what, stderr)
		case i >= 4 && (!strings.Contains(out, `"audited": false`) || !json.Valid([]byte(out))):
			t.Errorf("%s --json printed %s, want JSON with \"audited\": false", what, out)
		}
	}
}

// TestRefusedPushUploadsNothing: a push the controller would refuse (a
// viewer's, though the shell has store keys; or a version that exists) is
// refused before a chunk is uploaded: the store holds the same objects.
func TestRefusedPushUploadsNothing(t *testing.T) {
	f := farm.Start(t, farm.Options{Plaintext: true})
	viewer := f.Token(t, "viewer", imagefarmv1.Role_ROLE_VIEWER)
	if _, _, err := as(t, f, f.AdminToken, "image", "push", "demo-disk:1.0", writeDiskImage(t, 2<<20, 9)); err != nil {
		t.Fatal(err)
	}
	objects := func() []string {
		var out []string
		root := strings.TrimPrefix(f.StoreURL, "file://")
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, strings.TrimPrefix(p, root))
			}
			return err
		})
		return out
	}
	before := objects()
	fresh := writeDiskImage(t, 8<<20, 31) // chunks the store does not have
	for _, tc := range []struct {
		token, ref, want string
	}{
		{viewer, "demo-disk:2.0", "needs the admin role"},
		{f.AdminToken, "demo-disk:1.0", "demo-disk:1.0 is sha256:"},
	} {
		_, _, err := as(t, f, tc.token, "image", "push", tc.ref, fresh)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("push %s = %v, want refused with %q", tc.ref, err, tc.want)
		}
	}
	if after := objects(); !slices.Equal(after, before) {
		t.Errorf("refused pushes changed the store:\nbefore %q\nafter  %q", before, after)
	}
}
