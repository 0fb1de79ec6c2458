package controller_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// wantPolicy is the access policy, written out independently of the
// controller's table: the least role of each client API method, and
// "node" for a method authorized by the node certificate alone.
var wantPolicy = map[string]string{
	"GetJob": "viewer", "ListJobs": "viewer", "WatchJob": "viewer", "ListNodes": "viewer", "ListDrives": "viewer",
	"ListImages": "viewer", "GetImage": "viewer", "ListAudit": "viewer",
	"SubmitJob": "operator", "SubmitCapture": "operator", "CancelJob": "operator",
	"CreateImageVersion": "admin", "SetImageChannel": "admin", "RemoveImageRef": "admin", "SignImage": "admin", "CreateToken": "admin", "ListTokens": "admin", "RevokeToken": "admin",
	"Connect":     "node",
	"ListDevices": "viewer", "GetDevice": "viewer", "PlanBoot": "operator",
	"Enroll": "boot token", "Report": "device", "ReadObject": "device", "StatObject": "device", "ListObjects": "device",
	"SubmitReset": "operator", "ListResetPolicies": "viewer", "SetResetPolicy": "admin", "SetDeviceFacts": "admin",
	"CheckResetTrigger": "device", "PutResetState": "device", "GetResetState": "device",
	"ListModels": "viewer", "GetModel": "viewer", "ListRollouts": "viewer", "AddModel": "admin", "UpdateModel": "admin",
	"StartRollout": "operator", "ApproveRollout": "operator", "PauseRollout": "operator", "ResumeRollout": "operator",
	"AbortRollout": "operator",
	"Capture":      "device",
}

// rpc is one method of a service, as its descriptor has it.
type rpc struct {
	name, full     string
	stream, client bool
}

// rpcs lists every method of the services from their descriptors, so a
// new method is in the matrix as soon as it is in a service.
func rpcs() []rpc {
	var out []rpc
	for _, sd := range []grpc.ServiceDesc{imagefarmv1.ImageFarmService_ServiceDesc, imagefarmv1.ImagerService_ServiceDesc,
		imagefarmv1.DeviceService_ServiceDesc} {
		for _, m := range sd.Methods {
			out = append(out, rpc{name: m.MethodName, full: "/" + sd.ServiceName + "/" + m.MethodName})
		}
		for _, s := range sd.Streams {
			out = append(out, rpc{name: s.StreamName, full: "/" + sd.ServiceName + "/" + s.StreamName, stream: true, client: s.ClientStreams})
		}
	}
	return out
}

var roleRank = map[string]int{"viewer": 1, "operator": 2, "admin": 3}

// TestAuthorizationMatrix calls every method of both services with every
// kind of caller (no token, each role, a revoked token) over every kind of
// transport credential, and checks each call's code against the policy:
// refused with the transport's code, refused for the token, or let through
// to the handler (which may still refuse the empty request it gets).
func TestAuthorizationMatrix(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	secrets := map[string]string{"none": ""}
	for _, role := range []imagefarmv1.Role{imagefarmv1.Role_ROLE_VIEWER, imagefarmv1.Role_ROLE_OPERATOR, imagefarmv1.Role_ROLE_ADMIN} {
		name := strings.ToLower(strings.TrimPrefix(role.String(), "ROLE_"))
		secrets[name] = createToken(t, f, "as-"+name, role)
	}
	secrets["revoked"] = createToken(t, f, "revoked", imagefarmv1.Role_ROLE_ADMIN)
	if _, err := f.API.RevokeToken(t.Context(), &imagefarmv1.RevokeTokenRequest{NameOrId: "revoked"}); err != nil {
		t.Fatal(err)
	}
	node := func(name string) pki.Request { return pki.Request{Kind: pki.KindNode, Name: name} }
	expired := node("a")
	expired.NotBefore, expired.ValidFor = time.Now().Add(-48*time.Hour), time.Hour
	withCert := func(ca *testenv.PKI, r pki.Request) credentials.TransportCredentials {
		cert, key := ca.Issue(t, r)
		cfg, err := pki.ClientConfig(f.PKI.CAFile(), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(cfg)
	}
	// Each transport: its credentials, the code every call gets whatever
	// its token (OK: the token decides), and Connect's code for node a.
	for _, tr := range []struct {
		name      string
		creds     credentials.TransportCredentials
		plaintext bool
		all       codes.Code
		connect   codes.Code
	}{
		{"plaintext against TLS", insecure.NewCredentials(), true, codes.Unavailable, codes.Unavailable},
		{"TLS without a certificate", f.ClientCreds(t, ""), false, codes.OK, codes.Unauthenticated},
		{"another CA's certificate", withCert(testenv.NewPKI(t), node("a")), false, codes.Unauthenticated, codes.Unauthenticated},
		{"an expired certificate", withCert(f.PKI, expired), false, codes.Unauthenticated, codes.Unauthenticated},
		{"another node's certificate", withCert(f.PKI, node("b")), false, codes.OK, codes.PermissionDenied},
		{"a client's certificate", withCert(f.PKI, pki.Request{Kind: pki.KindClient, Name: "alice"}), false, codes.OK, codes.PermissionDenied},
		{"the controller's certificate", withCert(f.PKI, pki.Request{Kind: pki.KindServer, Hosts: []string{"127.0.0.1"}}), false, codes.Unauthenticated, codes.Unauthenticated},
		{"node a's certificate", withCert(f.PKI, node("a")), false, codes.OK, codes.OK},
	} {
		t.Run(tr.name, func(t *testing.T) {
			// The transports run at once: each has a connection of its
			// own, and every call it makes is refused or has an empty
			// request, so none changes what another sees.
			t.Parallel()
			conn := f.Dial(t, tr.creds)
			for _, m := range rpcs() {
				need, ok := wantPolicy[m.name]
				if !ok {
					t.Errorf("%s: the test has no policy for it: add it to wantPolicy", m.full)
					continue
				}
				for _, who := range []string{"none", "viewer", "operator", "admin", "revoked"} {
					name := m.name + "/" + who
					got := callCode(t, conn, m, tokens.Bearer{Secret: secrets[who], Plaintext: tr.plaintext})
					switch {
					case need == "node" || tr.all != codes.OK:
						want := tr.all
						if need == "node" {
							want = tr.connect
						}
						if got != want {
							t.Errorf("%s = %v, want %v", name, got, want)
						}
					case need == "device": // no API token is a device credential
						if got != codes.Unauthenticated {
							t.Errorf("%s = %v, want Unauthenticated", name, got)
						}
					case need == "boot token": // the handler redeems the request's token, whoever calls
						if got != codes.InvalidArgument {
							t.Errorf("%s = %v, want the handler's InvalidArgument for an empty request", name, got)
						}
					case who == "none" || who == "revoked":
						if got != codes.Unauthenticated {
							t.Errorf("%s = %v, want Unauthenticated", name, got)
						}
					case roleRank[who] < roleRank[need]:
						if got != codes.PermissionDenied {
							t.Errorf("%s = %v, want PermissionDenied (needs %s)", name, got, need)
						}
					default:
						if got == codes.Unauthenticated || got == codes.PermissionDenied || got == codes.Unavailable || got == codes.Unimplemented {
							t.Errorf("%s = %v, want it allowed through to the handler", name, got)
						}
					}
				}
			}
		})
	}
}

// callCode calls m on conn with an empty request (a Hello for node a on
// Connect), with the token in b when it has one, and returns the code the
// call ends with.
func callCode(t *testing.T, conn *grpc.ClientConn, m rpc, b tokens.Bearer) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var opts []grpc.CallOption
	if b.Secret != "" {
		opts = append(opts, grpc.PerRPCCredentials(b))
	}
	if !m.stream {
		return status.Code(conn.Invoke(ctx, m.full, &emptypb.Empty{}, &emptypb.Empty{}, opts...))
	}
	// A stream still open after a second is in its handler (WatchJob of
	// every job): a refusal comes at once. It ends DeadlineExceeded.
	ctx, cancel = context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: m.client}, m.full, opts...)
	if err != nil {
		return status.Code(err)
	}
	var req any = &emptypb.Empty{}
	if m.name == "Connect" {
		req = &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: &imagefarmv1.Hello{NodeId: "a", InstanceId: "i-a"}}}
	}
	s.SendMsg(req) // an error shows in RecvMsg
	if !m.client {
		s.CloseSend()
	}
	for {
		err := s.RecvMsg(&emptypb.Empty{})
		if errors.Is(err, io.EOF) {
			return codes.OK
		}
		if err != nil {
			return status.Code(err)
		}
		if m.client { // Connect: its first answer is the HelloAck
			return codes.OK
		}
	}
}

// createToken creates a token with the admin token and returns its secret.
func createToken(t *testing.T, f *farm.Farm, name string, role imagefarmv1.Role) string {
	t.Helper()
	resp, err := f.API.CreateToken(t.Context(), &imagefarmv1.CreateTokenRequest{Name: name, Role: role})
	if err != nil {
		t.Fatalf("CreateToken(%s, %v) = %v", name, role, err)
	}
	return resp.GetSecret()
}

// TestDenialsNameTheMissingRole: a person told no can act on the message.
func TestDenialsNameTheMissingRole(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	viewer := createToken(t, f, "alice", imagefarmv1.Role_ROLE_VIEWER)
	conn := f.Dial(t, f.ClientCreds(t, ""))
	api := imagefarmv1.NewImageFarmServiceClient(conn)
	for _, tc := range []struct {
		name   string
		secret string
		code   codes.Code
		msg    string
	}{
		{"no token", "", codes.Unauthenticated, "no token: pass --token or set IMAGEFARM_TOKEN"},
		{"unknown token", "ift_nope", codes.Unauthenticated, "unknown or revoked token"},
		{"a viewer submits", viewer, codes.PermissionDenied, `SubmitJob needs the operator role; token "alice" is a viewer`},
	} {
		var opts []grpc.CallOption
		if tc.secret != "" {
			opts = append(opts, grpc.PerRPCCredentials(tokens.Bearer{Secret: tc.secret}))
		}
		_, err := api.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")}, opts...)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: SubmitJob() = %v, want %v with %q", tc.name, err, tc.code, tc.msg)
		}
	}
}

// TestTokensAreManagedAndAudited: create, list (never a secret), revoke by
// id, and the audit trail names the user who did each.
func TestTokensAreManagedAndAudited(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	ops := createToken(t, f, "ops", imagefarmv1.Role_ROLE_OPERATOR)
	if _, err := f.API.CreateToken(t.Context(), &imagefarmv1.CreateTokenRequest{Name: "ops", Role: imagefarmv1.Role_ROLE_VIEWER}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("CreateToken(a taken name) = %v, want AlreadyExists", err)
	}
	list, err := f.API.ListTokens(t.Context(), &imagefarmv1.ListTokensRequest{})
	if err != nil || len(list.GetTokens()) != 2 || list.GetTokens()[1].GetName() != "ops" || list.GetTokens()[1].GetCreatedBy() != "user:admin" {
		t.Fatalf("ListTokens() = %v, %v; want admin and ops, created by user:admin", list, err)
	}
	if strings.Contains(list.String(), ops) {
		t.Error("ListTokens shows a secret")
	}
	opsAPI := imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""), f.Bearer(ops)))
	if _, err := opsAPI.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("operator CancelJob(unknown) = %v, want NotFound", err)
	}
	if _, err := f.API.RevokeToken(t.Context(), &imagefarmv1.RevokeTokenRequest{NameOrId: list.GetTokens()[1].GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := opsAPI.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListJobs with a revoked token = %v, want Unauthenticated", err)
	}
	recs, err := trail(t, f.API)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, summary(r))
	}
	want := []string{
		`TOKEN_CREATE user:admin message=token "ops"`,
		`TOKEN_REVOKE user:admin message=token "ops"`,
	}
	if len(got) != len(want) {
		t.Fatalf("audit trail %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("audit record %d = %q, want it to start %q", i, got[i], want[i])
		}
	}
}

// TestBootstrapTokenOnlyWhenNoAdminExists: the first controller of a farm
// writes an admin token (0600) that works; a controller of a farm that has
// an admin token writes none; once the last admin token was revoked (with
// force), the next controller writes a new one.
func TestBootstrapTokenOnlyWhenNoAdminExists(t *testing.T) {
	f := farm.Start(t, farm.Options{Plaintext: true, NoController: true})
	dir := t.TempDir()
	run := func(file string) imagefarmv1.ImageFarmServiceClient {
		c := f.StartController(t, func(cfg *controller.Config) { cfg.BootstrapTokenFile = file })
		secret, _ := os.ReadFile(file)
		return imagefarmv1.NewImageFarmServiceClient(farm.DialAt(t, c.Addr, f.ClientCreds(t, ""), f.Bearer(strings.TrimSpace(string(secret)))))
	}
	first := filepath.Join(dir, "first.token")
	api := run(first)
	if fi, err := os.Stat(first); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap token file: %v, %v; want mode 0600", fi, err)
	}
	list, err := api.ListTokens(t.Context(), &imagefarmv1.ListTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 || list.GetTokens()[0].GetRole() != imagefarmv1.Role_ROLE_ADMIN {
		t.Fatalf("ListTokens(bootstrap token) = %v, %v; want the bootstrap admin token", list, err)
	}
	second := filepath.Join(dir, "second.token")
	run(second)
	if _, err := os.Stat(second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a farm with tokens got a bootstrap token file: %v", err)
	}
	if _, err := api.CreateToken(t.Context(), &imagefarmv1.CreateTokenRequest{Name: "bootstrap-viewer", Role: imagefarmv1.Role_ROLE_VIEWER}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.RevokeToken(t.Context(), &imagefarmv1.RevokeTokenRequest{NameOrId: "bootstrap", Force: true}); err != nil {
		t.Fatal(err)
	}
	third := filepath.Join(dir, "third.token")
	list, err = run(third).ListTokens(t.Context(), &imagefarmv1.ListTokensRequest{})
	if err != nil || len(list.GetTokens()) != 2 || list.GetTokens()[0].GetName() != "bootstrap" || list.GetTokens()[0].GetRole() != imagefarmv1.Role_ROLE_ADMIN {
		t.Errorf("ListTokens(a new bootstrap token, after the last admin was revoked) = %v, %v; want a new admin bootstrap and the viewer", list, err)
	}
}
