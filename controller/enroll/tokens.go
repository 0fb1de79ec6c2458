package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TokensBucket is the JetStream KV bucket of the boot tokens.
const TokensBucket = "imagefarm-boot-tokens"

// TokenPrefix starts every boot token, so that one is recognized where it
// leaks.
const TokenPrefix = "ifb_"

// DefaultTokenTTL is how long a boot token is accepted: long enough for a
// laptop to fetch the deploy environment and boot it under TCG, short
// enough that a token sniffed from the LAN is soon worthless.
const DefaultTokenTTL = 10 * time.Minute

// keep is how long a redeemed or expired token's record stays, so that a
// replay is refused as a replay rather than as an unknown token.
const keep = 24 * time.Hour

// Why a boot token is refused. Each wraps ErrRefused.
var (
	// ErrRefused is wrapped by every refusal of a boot token.
	ErrRefused = errors.New("enroll: boot token refused")
	// ErrUnknownToken is a token the controller never issued (or one so
	// old its record is gone).
	ErrUnknownToken = fmt.Errorf("%w: unknown", ErrRefused)
	// ErrUsed is a token redeemed before: a replay, or the loser of two
	// racing enrollments.
	ErrUsed = fmt.Errorf("%w: already used", ErrRefused)
	// ErrExpired is a token redeemed after its expiry.
	ErrExpired = fmt.Errorf("%w: expired", ErrRefused)
	// ErrWrongMAC is a token redeemed for a MAC other than the one it was
	// issued for.
	ErrWrongMAC = fmt.Errorf("%w: issued for another MAC", ErrRefused)
)

// Grant is what a boot token was issued for.
type Grant struct {
	MAC      string    `json:"mac"`
	DeviceID string    `json:"device_id,omitempty"` // the device with the MAC, if known when issued
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
	// Used is when it was redeemed; zero while it is not.
	Used time.Time `json:"used,omitzero"`
}

// Tokens keeps boot tokens in a KV bucket.
type Tokens struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	now func() time.Time
}

// OpenTokens makes sure the bucket exists, kept by replicas servers, and
// returns its store; tokens it issues live ttl (DefaultTokenTTL when 0).
func OpenTokens(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration) (*Tokens, error) {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	kv, err := openBucket(ctx, js, TokensBucket, "imagefarm boot tokens: SHA-256 of the token -> what it was issued for", replicas)
	if err != nil {
		return nil, err
	}
	return &Tokens{kv: kv, ttl: ttl, now: time.Now}, nil
}

// openBucket makes sure a bucket of hashed secrets exists, its records
// removed by the server after keep.
func openBucket(ctx context.Context, js jetstream.JetStream, name, desc string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, Description: desc,
		TTL: keep, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", name, err)
	}
	return kv, nil
}

// newSecret is prefix and 32 random bytes, URL-safe.
func newSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashKey is the bucket key of a secret.
func hashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Issue makes a boot token for mac (normalized by the caller) and returns
// it with its expiry. deviceID is the device known by mac, "" if none.
func (t *Tokens) Issue(ctx context.Context, mac, deviceID string) (string, time.Time, error) {
	now := t.now()
	g := Grant{MAC: mac, DeviceID: deviceID, Issued: now, Expires: now.Add(t.ttl)}
	v, err := json.Marshal(g)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode boot token: %w", err)
	}
	secret := newSecret(TokenPrefix)
	if _, err := t.kv.Create(ctx, hashKey(secret), v); err != nil {
		return "", time.Time{}, fmt.Errorf("store boot token: %w", err)
	}
	return secret, g.Expires, nil
}

// Redeem uses the token secret for mac, exactly once: of two racing
// redeems of one token, one wins and the other gets ErrUsed (the record
// is marked used by a compare-and-swap on its revision). A token that is
// unknown, used, expired or issued for another MAC is refused, and
// nothing changes; the Grant returned with a refusal says what the token
// was issued for, when it was issued at all.
func (t *Tokens) Redeem(ctx context.Context, secret, mac string) (Grant, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return Grant{}, ErrUnknownToken
	}
	key := hashKey(secret)
	e, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Grant{}, ErrUnknownToken
	}
	if err != nil {
		return Grant{}, fmt.Errorf("read boot token: %w", err)
	}
	var g Grant
	if err := json.Unmarshal(e.Value(), &g); err != nil {
		return Grant{}, fmt.Errorf("decode boot token: %w", err)
	}
	now := t.now()
	switch {
	case !g.Used.IsZero():
		return g, fmt.Errorf("%w (at %s)", ErrUsed, g.Used.UTC().Format(time.RFC3339))
	case now.After(g.Expires):
		return g, fmt.Errorf("%w (at %s)", ErrExpired, g.Expires.UTC().Format(time.RFC3339))
	case g.MAC != mac:
		return g, fmt.Errorf("%w: issued for %s, redeemed for %s", ErrWrongMAC, g.MAC, mac)
	}
	used := g
	used.Used = now
	v, err := json.Marshal(used)
	if err != nil {
		return g, fmt.Errorf("encode boot token: %w", err)
	}
	if _, err := t.kv.Update(ctx, key, v, e.Revision()); err != nil {
		if isConflict(err) {
			return g, fmt.Errorf("%w (by a concurrent enrollment)", ErrUsed)
		}
		return g, fmt.Errorf("mark boot token used: %w", err)
	}
	return used, nil
}

// isConflict reports whether a KV update lost to another writer.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
