package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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
)

var validName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// Store keeps the tokens in a KV bucket.
type Store struct {
	kv jetstream.KeyValue
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

// hashKey is the bucket key of secret.
func hashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Create makes a token named name with role, created by who, and returns
// it with its secret, which is not kept anywhere.
func (s *Store) Create(ctx context.Context, name string, role imagefarmv1.Role, who string) (*imagefarmv1.Token, string, error) {
	if !validName.MatchString(name) {
		return nil, "", fmt.Errorf("token name %q: want 1 to 64 letters, digits, '.', '_', '-' or '@': %w", name, ErrInvalid)
	}
	if _, ok := imagefarmv1.Role_name[int32(role)]; !ok || role == imagefarmv1.Role_ROLE_UNSPECIFIED {
		return nil, "", fmt.Errorf("role %v: want viewer, operator or admin: %w", role, ErrInvalid)
	}
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

// List returns every token, by name.
func (s *Store) List(ctx context.Context) ([]*imagefarmv1.Token, error) {
	keys, err := s.keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []*imagefarmv1.Token
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
		out = append(out, t)
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

// Revoke deletes the token named or with the id nameOrID and returns it.
func (s *Store) Revoke(ctx context.Context, nameOrID string) (*imagefarmv1.Token, error) {
	keys, err := s.keys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		t, err := decode(e.Value())
		if err != nil || (t.GetName() != nameOrID && t.GetId() != nameOrID) {
			continue
		}
		if err := s.kv.Purge(ctx, k); err != nil {
			return nil, fmt.Errorf("revoke token %q: %w", t.GetName(), err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("token %q: no token has this name or id: %w", nameOrID, ErrUnknown)
}

// Empty reports whether there is no token at all.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	keys, err := s.keys(ctx)
	return len(keys) == 0, err
}
