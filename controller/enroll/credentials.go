package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CredentialsBucket is the JetStream KV bucket of the device credentials.
const CredentialsBucket = "imagefarm-device-credentials"

// CredentialPrefix starts every device credential.
const CredentialPrefix = "ifd_"

// DefaultCredentialTTL is how long a device credential is accepted: time
// to write and verify a large image over a slow link.
const DefaultCredentialTTL = 4 * time.Hour

// ErrNoCredential is a device credential that is unknown or expired.
var ErrNoCredential = errors.New("enroll: unknown or expired device credential")

// credential is what the bucket keeps of one.
type credential struct {
	DeviceID string    `json:"device_id"`
	Expires  time.Time `json:"expires"`
}

// Credentials keeps device credentials in a KV bucket.
type Credentials struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	now func() time.Time
}

// OpenCredentials makes sure the bucket exists and returns its store;
// credentials it issues live ttl (DefaultCredentialTTL when 0), and never
// longer than the bucket keeps them.
func OpenCredentials(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration) (*Credentials, error) {
	if ttl <= 0 {
		ttl = DefaultCredentialTTL
	}
	kv, err := openBucket(ctx, js, CredentialsBucket, "imagefarm device credentials: SHA-256 of the secret -> device", replicas)
	if err != nil {
		return nil, err
	}
	return &Credentials{kv: kv, ttl: min(ttl, keep), now: time.Now}, nil
}

// Issue makes a credential for deviceID and returns it with its expiry.
func (c *Credentials) Issue(ctx context.Context, deviceID string) (string, time.Time, error) {
	cr := credential{DeviceID: deviceID, Expires: c.now().Add(c.ttl)}
	v, err := json.Marshal(cr)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode device credential: %w", err)
	}
	secret := newSecret(CredentialPrefix)
	if _, err := c.kv.Create(ctx, hashKey(secret), v); err != nil {
		return "", time.Time{}, fmt.Errorf("store device credential: %w", err)
	}
	return secret, cr.Expires, nil
}

// Caller is who a credential authorizes.
type Caller struct {
	// DeviceID is the device the credential was issued to.
	DeviceID string
	// Session names the enrollment that got the credential (a prefix of
	// its hash): a device's sequence numbers start again with each one.
	Session string
}

// Device returns who a credential authorizes, or ErrNoCredential.
func (c *Credentials) Device(ctx context.Context, secret string) (Caller, error) {
	if !strings.HasPrefix(secret, CredentialPrefix) {
		return Caller{}, ErrNoCredential
	}
	key := hashKey(secret)
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Caller{}, ErrNoCredential
	}
	if err != nil {
		return Caller{}, fmt.Errorf("read device credential: %w", err)
	}
	var cr credential
	if err := json.Unmarshal(e.Value(), &cr); err != nil {
		return Caller{}, fmt.Errorf("decode device credential: %w", err)
	}
	if c.now().After(cr.Expires) {
		return Caller{}, ErrNoCredential
	}
	return Caller{DeviceID: cr.DeviceID, Session: key[:12]}, nil
}
