package natsauth_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/natsauth"
)

func TestConnectOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		file    string
		opts    int
		wantErr error
	}{
		{"none", "", 0, nil},
		{"user and password", write("up", "imager-n1:secret\n"), 1, nil},
		{"creds", write("creds", "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n"), 1, nil},
		{"no password", write("nopass", "imager-n1\n"), 0, natsauth.ErrBadCreds},
		{"empty user", write("nouser", ":secret\n"), 0, natsauth.ErrBadCreds},
		{"two lines", write("lines", "a:b\nc:d\n"), 0, natsauth.ErrBadCreds},
		{"missing", filepath.Join(dir, "missing"), 0, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := natsauth.ConnectOptions(tt.file)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("ConnectOptions(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
			if len(opts) != tt.opts {
				t.Errorf("ConnectOptions(%s) gave %d options, want %d", tt.name, len(opts), tt.opts)
			}
		})
	}
}

// TestGenerate: the server reads the configuration Generate writes, with
// each user's permissions; a second run for more nodes keeps the
// passwords already given.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := natsauth.Generate(dir, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	n1 := filepath.Join(dir, natsauth.ImagerCredsFile("n1"))
	before, err := os.ReadFile(n1)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsauth.Generate(dir, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(n1)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("a second Generate changed n1's credentials")
	}
	for _, f := range []string{natsauth.ServerConfigFile, natsauth.ControllerCredsFile, natsauth.ImagerCredsFile("n2")} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, natsauth.ServerConfigFile))
	if err != nil {
		t.Fatalf("the server cannot read %s: %v", natsauth.ServerConfigFile, err)
	}
	want := map[string]natsauth.Permissions{
		natsauth.ControllerUser:   natsauth.ControllerPermissions(),
		natsauth.ImagerUser("n1"): natsauth.ImagerPermissions("n1"),
		natsauth.ImagerUser("n2"): natsauth.ImagerPermissions("n2"),
	}
	if len(opts.Users) != len(want) {
		t.Fatalf("%d users in the configuration, want %d", len(opts.Users), len(want))
	}
	for _, u := range opts.Users {
		p, ok := want[u.Username]
		if !ok {
			t.Errorf("unexpected user %s", u.Username)
			continue
		}
		if !slices.Equal(u.Permissions.Publish.Allow, p.Publish) || !slices.Equal(u.Permissions.Subscribe.Allow, p.Subscribe) {
			t.Errorf("user %s may publish %q and subscribe %q, want %q and %q", u.Username,
				u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow, p.Publish, p.Subscribe)
		}
	}
}

func TestGenerateRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := natsauth.Generate(dir, []string{"bad.node"}); !errors.Is(err, ident.ErrInvalid) {
		t.Errorf("Generate(bad.node) = %v, want %v", err, ident.ErrInvalid)
	}
	// A credentials file of another user under a node's name.
	if err := os.WriteFile(filepath.Join(dir, natsauth.ImagerCredsFile("n1")), []byte("imager-n2:x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := natsauth.Generate(dir, []string{"n1"}); !errors.Is(err, natsauth.ErrBadCreds) {
		t.Errorf("Generate over another user's file = %v, want %v", err, natsauth.ErrBadCreds)
	}
}
