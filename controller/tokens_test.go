package controller_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestTokenNamesAndRevokesCannotBeConfused: through the API, a name that
// looks like an id is refused with InvalidArgument; the last admin token
// is kept with FailedPrecondition saying what to do, and nothing is
// recorded; forced, it is revoked, and that is recorded.
func TestTokenNamesAndRevokesCannotBeConfused(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	list, err := f.API.ListTokens(t.Context(), &imagefarmv1.ListTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 {
		t.Fatalf("ListTokens() = %v, %v; want the admin token", list, err)
	}
	adminID := list.GetTokens()[0].GetId()
	_, err = f.API.CreateToken(t.Context(), &imagefarmv1.CreateTokenRequest{Name: adminID, Role: imagefarmv1.Role_ROLE_VIEWER})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "look like a token's id") {
		t.Errorf("CreateToken(the admin's id as a name) = %v, want InvalidArgument", err)
	}
	viewer := imagefarmv1.NewImageFarmServiceClient(f.Dial(t, f.ClientCreds(t, ""),
		grpc.WithPerRPCCredentials(tokens.Bearer{Secret: createToken(t, f, "viewer", imagefarmv1.Role_ROLE_VIEWER)})))
	_, err = f.API.RevokeToken(t.Context(), &imagefarmv1.RevokeTokenRequest{NameOrId: adminID})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "is the last admin token") ||
		!strings.Contains(status.Convert(err).Message(), "imagefarm token create --name NAME --role admin") {
		t.Errorf("RevokeToken(the last admin) = %v, want FailedPrecondition saying what to do", err)
	}
	if _, err := f.API.ListTokens(t.Context(), &imagefarmv1.ListTokensRequest{}); err != nil {
		t.Fatalf("the admin token after a refused revoke: %v", err)
	}
	resp, err := f.API.RevokeToken(t.Context(), &imagefarmv1.RevokeTokenRequest{NameOrId: adminID, Force: true})
	if err != nil || resp.GetToken().GetName() != "admin" {
		t.Fatalf("RevokeToken(the last admin, forced) = %v, %v", resp, err)
	}
	if _, err := f.API.ListTokens(t.Context(), &imagefarmv1.ListTokensRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the revoked admin token still works: %v", err)
	}
	recs, err := trail(t, viewer)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, summary(r))
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], `TOKEN_CREATE user:admin message=token "viewer"`) ||
		!strings.HasPrefix(got[1], `TOKEN_REVOKE user:admin message=token "admin"`) {
		t.Errorf("audit trail %q, want the viewer's creation and one revoke, of the admin token", got)
	}
}
