package tokens_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

const (
	viewer = imagefarmv1.Role_ROLE_VIEWER
	admin  = imagefarmv1.Role_ROLE_ADMIN
)

// open returns a token store on a new NATS server, and its JetStream.
func open(t *testing.T) (*tokens.Store, jetstream.JetStream) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tokens.Open(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return st, js
}

// create makes a token and returns it with its secret.
func create(t *testing.T, st *tokens.Store, name string, role imagefarmv1.Role) (*imagefarmv1.Token, string) {
	t.Helper()
	tok, secret, err := st.Create(t.Context(), name, role, "test")
	if err != nil {
		t.Fatalf("Create(%s, %v) = %v", name, role, err)
	}
	return tok, secret
}

// valid reports whether secret is still a token's.
func valid(t *testing.T, st *tokens.Store, secret string) bool {
	t.Helper()
	_, err := st.Lookup(t.Context(), secret)
	if err != nil && !errors.Is(err, tokens.ErrUnknown) {
		t.Fatal(err)
	}
	return err == nil
}

// TestNamesCannotLookLikeIDs: a name of 12 hex digits, in either case, is
// what an id looks like, so it is refused; longer or shorter ones are
// names.
func TestNamesCannotLookLikeIDs(t *testing.T) {
	st, _ := open(t)
	a, _ := create(t, st, "admin", admin)
	for _, name := range []string{a.GetId(), strings.ToUpper(a.GetId()), "0123456789ab"} {
		_, _, err := st.Create(t.Context(), name, viewer, "test")
		if !errors.Is(err, tokens.ErrInvalid) || !strings.Contains(err.Error(), "look like a token's id") {
			t.Errorf("Create(%q) = %v, want ErrInvalid saying it looks like an id", name, err)
		}
	}
	for _, name := range []string{"0123456789abc", "0123456789a", "build-0123456789ab"} {
		if _, _, err := st.Create(t.Context(), name, viewer, "test"); err != nil {
			t.Errorf("Create(%q) = %v, want a token", name, err)
		}
	}
}

// TestRevokeRefusesANameThatIsAnotherTokensID: a viewer token named with
// the admin token's id (stored before names were checked) makes that
// string ambiguous: revoke refuses it naming both tokens, and both stay
// valid; each is then revoked by what only it has.
func TestRevokeRefusesANameThatIsAnotherTokensID(t *testing.T) {
	st, js := open(t)
	a, adminSecret := create(t, st, "admin", admin)
	create(t, st, "admin2", admin)
	legacy := &imagefarmv1.Token{Id: "0a0a0a0a0a0a", Name: a.GetId(), Role: viewer}
	legacySecret := "ift_legacy"
	kv, err := js.KeyValue(t.Context(), tokens.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := proto.Marshal(legacy)
	sum := sha256.Sum256([]byte(legacySecret))
	if _, err := kv.Create(t.Context(), hex.EncodeToString(sum[:]), v); err != nil {
		t.Fatal(err)
	}

	_, err = st.Revoke(t.Context(), a.GetId(), false)
	if !errors.Is(err, tokens.ErrAmbiguous) || !strings.Contains(err.Error(), `"admin" (id `+a.GetId()+`)`) ||
		!strings.Contains(err.Error(), `"`+a.GetId()+`" (id 0a0a0a0a0a0a)`) {
		t.Errorf("Revoke(%s) = %v, want ErrAmbiguous naming both tokens", a.GetId(), err)
	}
	if !valid(t, st, adminSecret) || !valid(t, st, legacySecret) {
		t.Fatal("a refused revoke revoked a token")
	}
	if got, err := st.Revoke(t.Context(), "0a0a0a0a0a0a", false); err != nil || got.GetName() != a.GetId() {
		t.Errorf("Revoke(the viewer's id) = %v, %v; want the viewer", got, err)
	}
	if valid(t, st, legacySecret) || !valid(t, st, adminSecret) {
		t.Error("revoking the viewer by its id did not revoke it alone")
	}
	if got, err := st.Revoke(t.Context(), a.GetId(), false); err != nil || got.GetName() != "admin" {
		t.Errorf("Revoke(the admin's id, now only its) = %v, %v; want the admin", got, err)
	}
	if _, err := st.Revoke(t.Context(), "nobody", false); !errors.Is(err, tokens.ErrUnknown) {
		t.Errorf("Revoke(nobody) = %v, want ErrUnknown", err)
	}
	if _, err := st.Revoke(t.Context(), strings.Repeat("x", 1<<20), false); !errors.Is(err, tokens.ErrUnknown) || len(err.Error()) > 1024 {
		t.Errorf("Revoke(1 MiB name) = %d bytes of error (%v), want ErrUnknown in at most 1024", len(err.Error()), errors.Is(err, tokens.ErrUnknown))
	}
}

// TestLastAdminTokenIsKept: the last admin token is revoked only when
// forced; a refused revoke leaves it valid and says what to do instead.
func TestLastAdminTokenIsKept(t *testing.T) {
	st, _ := open(t)
	_, first := create(t, st, "first", admin)
	create(t, st, "ops", viewer)
	_, err := st.Revoke(t.Context(), "first", false)
	want := `token "first" (id `
	if !errors.Is(err, tokens.ErrLastAdmin) || !strings.HasPrefix(err.Error(), want) ||
		!strings.Contains(err.Error(), "is the last admin token: without one nobody can manage tokens or record image changes; "+
			"create another first (imagefarm token create --name NAME --role admin), or revoke it anyway with --force") {
		t.Errorf("Revoke(the last admin) = %v, want ErrLastAdmin saying what to do", err)
	}
	if !valid(t, st, first) {
		t.Fatal("a refused revoke revoked the last admin token")
	}
	_, second := create(t, st, "second", admin)
	if _, err := st.Revoke(t.Context(), "first", false); err != nil {
		t.Fatalf("Revoke(an admin with another left) = %v", err)
	}
	if _, err := st.Revoke(t.Context(), "second", false); !errors.Is(err, tokens.ErrLastAdmin) {
		t.Errorf("Revoke(the admin left) = %v, want ErrLastAdmin", err)
	}
	if has, err := st.HasAdmin(t.Context()); err != nil || !has {
		t.Fatalf("HasAdmin() = %v, %v; want true", has, err)
	}
	if _, err := st.Revoke(t.Context(), "second", true); err != nil || valid(t, st, second) {
		t.Fatalf("Revoke(the last admin, forced) = %v; want it revoked", err)
	}
	if has, err := st.HasAdmin(t.Context()); err != nil || has {
		t.Errorf("HasAdmin() after the forced revoke = %v, %v; want false", has, err)
	}
}

// TestRacingRevokesKeepAnAdmin: two controllers (two stores on one bucket)
// each revoke one of the last two admin tokens at once; whichever way the
// race goes, an admin token is left.
func TestRacingRevokesKeepAnAdmin(t *testing.T) {
	st, js := open(t)
	other, err := tokens.Open(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 10 {
		a, _ := create(t, st, "a", admin)
		b, _ := create(t, st, "b", admin)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*tokens.Store{st, other} {
			wg.Go(func() { _, errs[i] = s.Revoke(t.Context(), []string{a.GetId(), b.GetId()}[i], false) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && !errors.Is(err, tokens.ErrLastAdmin) {
				t.Fatalf("round %d: Revoke = %v", round, err)
			}
		}
		if has, err := st.HasAdmin(t.Context()); err != nil || !has {
			t.Fatalf("round %d: HasAdmin() = %v, %v after racing revokes (%v); want an admin left", round, has, err, errs)
		}
		for _, name := range []string{"a", "b"} {
			st.Revoke(t.Context(), name, true)
		}
	}
}
