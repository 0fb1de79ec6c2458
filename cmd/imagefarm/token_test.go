package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// fakeTokens is the token part of a controller; it keeps the authorization
// each call carried.
type fakeTokens struct {
	imagefarmv1.UnimplementedImageFarmServiceServer

	mu      sync.Mutex
	auths   []string
	revokes []*imagefarmv1.RevokeTokenRequest
}

func (f *fakeTokens) saw(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auths = append(f.auths, strings.Join(md.Get("authorization"), ","))
}

var aliceToken = &imagefarmv1.Token{Id: "0123456789ab", Name: "alice", Role: imagefarmv1.Role_ROLE_OPERATOR, Created: testTime, CreatedBy: "user:bootstrap"}

func (f *fakeTokens) CreateToken(ctx context.Context, req *imagefarmv1.CreateTokenRequest) (*imagefarmv1.CreateTokenResponse, error) {
	f.saw(ctx)
	return &imagefarmv1.CreateTokenResponse{Token: &imagefarmv1.Token{Id: "0123456789ab", Name: req.GetName(), Role: req.GetRole()}, Secret: "ift_new"}, nil
}

func (f *fakeTokens) ListTokens(ctx context.Context, _ *imagefarmv1.ListTokensRequest) (*imagefarmv1.ListTokensResponse, error) {
	f.saw(ctx)
	return &imagefarmv1.ListTokensResponse{Tokens: []*imagefarmv1.Token{aliceToken}}, nil
}

func (f *fakeTokens) RevokeToken(ctx context.Context, req *imagefarmv1.RevokeTokenRequest) (*imagefarmv1.RevokeTokenResponse, error) {
	f.saw(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes = append(f.revokes, req)
	return &imagefarmv1.RevokeTokenResponse{Token: aliceToken}, nil
}

// runToken runs imagefarm token with --token secret against the plaintext
// fake at addr (a loopback address, where a token may go in plaintext).
func runToken(t *testing.T, addr, secret string, args ...string) (string, error) {
	t.Helper()
	g := &globals{controller: addr, token: secret, tls: tlsFlags{insecure: true}}
	root := &cobra.Command{Use: "imagefarm", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newTokenCmd(g))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"token"}, args...))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func TestTokenCommandsSendTheToken(t *testing.T) {
	f := &fakeTokens{}
	addr := serveFakeAPI(t, f)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--name", "bob", "--role", "viewer"}, "ift_new\n"},
		{[]string{"ls"}, "alice  0123456789ab  operator"},
		{[]string{"revoke", "alice"}, `revoked token "alice" (id 0123456789ab, operator), matched by name`},
		{[]string{"revoke", "0123456789ab"}, `revoked token "alice" (id 0123456789ab, operator), matched by id`},
	} {
		out, err := runToken(t, addr, "ift_admin", tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("token %s = %q, %v; want %q", strings.Join(tc.args, " "), out, err, tc.want)
		}
	}
	for i, a := range f.auths {
		if a != "Bearer ift_admin" {
			t.Errorf("call %d carried authorization %q, want %q", i, a, "Bearer ift_admin")
		}
	}
	if _, err := runToken(t, addr, "ift_admin", "create", "--name", "bob", "--role", "root"); err == nil || !strings.Contains(err.Error(), "viewer, operator, admin") {
		t.Errorf("token create --role root = %v, want the roles named", err)
	}
}

func TestTokenGoesInPlaintextOnlyToLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr      string
		plaintext bool
		refused   bool
	}{
		{"10.0.0.1:7700", true, true},
		{"ctl.example:7700", true, true},
		{"127.0.0.1:7700", true, false},
		{"[::1]:7700", true, false},
		{"localhost:7700", true, false},
		{"10.0.0.1:7700", false, false},
	} {
		_, err := tokenOption(&globals{controller: tc.addr, token: "ift_x"}, tc.plaintext)
		if (err != nil) != tc.refused || (err != nil && !strings.Contains(err.Error(), "refusing to send the token in plaintext")) {
			t.Errorf("tokenOption(%s, plaintext %v) = %v, want refused %v", tc.addr, tc.plaintext, err, tc.refused)
		}
	}
}

// TestTokenRevokeForceAndJSON: --force goes to the controller (only with
// the flag), and --json prints the revoked token.
func TestTokenRevokeForceAndJSON(t *testing.T) {
	f := &fakeTokens{}
	addr := serveFakeAPI(t, f)
	if _, err := runToken(t, addr, "ift_admin", "revoke", "alice"); err != nil {
		t.Fatal(err)
	}
	out, err := runToken(t, addr, "ift_admin", "revoke", "alice", "--force", "--json")
	got := &imagefarmv1.Token{}
	if err != nil || protojson.Unmarshal([]byte(out), got) != nil || !proto.Equal(got, aliceToken) {
		t.Errorf("token revoke --json = %v:\n%s\nwant alice's token", err, out)
	}
	if len(f.revokes) != 2 || f.revokes[0].GetForce() || !f.revokes[1].GetForce() || f.revokes[1].GetNameOrId() != "alice" {
		t.Errorf("revoke requests %v, want alice without force, then with", f.revokes)
	}
}
