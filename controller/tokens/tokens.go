package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Bucket is the JetStream KV bucket of the tokens.
const Bucket = "imagefarm-tokens"

// Prefix starts every secret, so that one is recognized where it leaks.
const Prefix = "ift_"

// idLen is how many hex digits of a secret's hash name its token.
const idLen = 12

var (
	// ErrUnknown is a secret, name or id that no token has.
	ErrUnknown = errors.New("tokens: unknown token")
	// ErrExists is a name another token has.
	ErrExists = errors.New("tokens: a token has this name")
	// ErrInvalid is a bad name or role.
	ErrInvalid = errors.New("tokens: invalid token")
	// ErrAmbiguous is a name or id that more than one token has.
	ErrAmbiguous = errors.New("tokens: more than one token matches")
	// ErrLastAdmin is a revoke, not forced, of the last admin token.
	ErrLastAdmin = errors.New("tokens: last admin token")
)

// Store keeps the tokens in a KV bucket.
type Store struct {
	kv jetstream.KeyValue
	// mu makes this store's creates and revokes one at a time, so that a
	// name is checked free and the last admin token counted with nothing
	// changing meanwhile. Revoke checks again after its change, for other
	// stores on the bucket (other controllers).
	mu sync.Mutex
}

// Open makes sure the bucket exists, kept by replicas servers, and
// returns its store.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket,
		Description: "imagefarm API tokens: SHA-256 of the secret -> Token", Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv}, nil
}

// looksLikeID reports whether name has the shape of a token id: idLen hex
// digits, in either case.
func looksLikeID(name string) bool {
	if len(name) != idLen {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// hashKey is the bucket key of secret.
func hashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Create makes a token named name with role, created by who, and returns
// it with its secret, which is not kept anywhere.
func (s *Store) Create(ctx context.Context, name string, role imagefarmv1.Role, who string) (*imagefarmv1.Token, string, error) {
	if err := ident.TokenName(name); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if looksLikeID(name) {
		return nil, "", fmt.Errorf("token name %q: %d hex digits look like a token's id, and revoke takes a name or an id; choose a name with other characters: %w",
			name, idLen, ErrInvalid)
	}
	if _, ok := imagefarmv1.Role_name[int32(role)]; !ok || role == imagefarmv1.Role_ROLE_UNSPECIFIED {
		return nil, "", fmt.Errorf("role %v: want viewer, operator or admin: %w", role, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.List(ctx)
	if err != nil {
		return nil, "", err
	}
	if slices.ContainsFunc(all, func(t *imagefarmv1.Token) bool { return t.GetName() == name }) {
		return nil, "", fmt.Errorf("token %q: revoke it first to reuse its name: %w", name, ErrExists)
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	secret := Prefix + base64.RawURLEncoding.EncodeToString(b)
	key := hashKey(secret)
	t := &imagefarmv1.Token{Id: key[:idLen], Name: name, Role: role, Created: timestamppb.New(time.Now()), CreatedBy: who}
	v, err := proto.Marshal(t)
	if err != nil {
		return nil, "", fmt.Errorf("encode token: %w", err)
	}
	if _, err := s.kv.Create(ctx, key, v); err != nil {
		return nil, "", fmt.Errorf("store token %q: %w", name, err)
	}
	return t, secret, nil
}

// Lookup returns the token of secret, or ErrUnknown.
func (s *Store) Lookup(ctx context.Context, secret string) (*imagefarmv1.Token, error) {
	e, err := s.kv.Get(ctx, hashKey(secret))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	return decode(e.Value())
}

func decode(v []byte) (*imagefarmv1.Token, error) {
	t := &imagefarmv1.Token{}
	if err := proto.Unmarshal(v, t); err != nil {
		return nil, fmt.Errorf("decode token: %w", err)
	}
	return t, nil
}

// entry is a stored token with its bucket key and encoded value.
type entry struct {
	key   string
	value []byte
	token *imagefarmv1.Token
}

// entries returns every stored token, in no order.
func (s *Store) entries(ctx context.Context) ([]entry, error) {
	keys, err := s.keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, k := range keys {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) { // revoked meanwhile
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read token: %w", err)
		}
		t, err := decode(e.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, entry{key: k, value: e.Value(), token: t})
	}
	return out, nil
}

// List returns every token, by name.
func (s *Store) List(ctx context.Context) ([]*imagefarmv1.Token, error) {
	all, err := s.entries(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*imagefarmv1.Token, len(all))
	for i, e := range all {
		out[i] = e.token
	}
	slices.SortFunc(out, func(a, b *imagefarmv1.Token) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

func (s *Store) keys(ctx context.Context) ([]string, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// Revoke deletes the one token whose name or id is nameOrID and returns it.
// A nameOrID that is the name of one token and the id of another (a name
// given before names could not look like ids) is refused with
// ErrAmbiguous. The last admin token is revoked only when force is set:
// without an admin nobody can manage tokens; otherwise it is refused with
// ErrLastAdmin.
func (s *Store) Revoke(ctx context.Context, nameOrID string, force bool) (*imagefarmv1.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.entries(ctx)
	if err != nil {
		return nil, err
	}
	e, err := match(all, nameOrID)
	if err != nil {
		return nil, err
	}
	if !force && isAdmin(e.token) && admins(all) == 1 {
		return nil, lastAdmin(e.token)
	}
	if err := s.kv.Purge(ctx, e.key); err != nil {
		return nil, fmt.Errorf("revoke token %q: %w", e.token.GetName(), err)
	}
	if !force && isAdmin(e.token) {
		return e.token, s.keepAnAdmin(ctx, e)
	}
	return e.token, nil
}

// keepAnAdmin puts revoked back when no admin token is left after all: a
// revoke through another store took the other one meanwhile.
func (s *Store) keepAnAdmin(ctx context.Context, revoked entry) error {
	all, err := s.entries(ctx)
	if err != nil || admins(all) > 0 {
		return err
	}
	if _, err := s.kv.Create(ctx, revoked.key, revoked.value); err != nil {
		return fmt.Errorf("restore token %q, revoked with the last other admin token at once: %w", revoked.token.GetName(), err)
	}
	return lastAdmin(revoked.token)
}

// match is the one token of all whose name or id is nameOrID.
func match(all []entry, nameOrID string) (entry, error) {
	var found []entry
	for _, e := range all {
		if e.token.GetName() == nameOrID || e.token.GetId() == nameOrID {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return entry{}, fmt.Errorf("token %s: no token has this name or id (list them with imagefarm token ls): %w", ident.Quote(nameOrID), ErrUnknown)
	case 1:
		return found[0], nil
	}
	var which []string
	for _, e := range found {
		which = append(which, fmt.Sprintf("%q (id %s)", e.token.GetName(), e.token.GetId()))
	}
	return entry{}, fmt.Errorf("token %s: %s all match; revoke one by the name or id that only it has: %w",
		ident.Quote(nameOrID), strings.Join(which, " and "), ErrAmbiguous)
}

func isAdmin(t *imagefarmv1.Token) bool { return t.GetRole() == imagefarmv1.Role_ROLE_ADMIN }

// admins counts the admin tokens of all.
func admins(all []entry) int {
	n := 0
	for _, e := range all {
		if isAdmin(e.token) {
			n++
		}
	}
	return n
}

func lastAdmin(t *imagefarmv1.Token) error {
	return fmt.Errorf("token %q (id %s) is the last admin token: without one nobody can manage tokens or record image changes; "+
		"create another first (imagefarm token create --name NAME --role admin), or revoke it anyway with --force: %w",
		t.GetName(), t.GetId(), ErrLastAdmin)
}

// HasAdmin reports whether there is an admin token.
func (s *Store) HasAdmin(ctx context.Context) (bool, error) {
	all, err := s.entries(ctx)
	return admins(all) > 0, err
}
