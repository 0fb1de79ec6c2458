package catalog

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// PublicKeyType is the first word of a public key line.
const PublicKeyType = "imagefarm-ed25519"

// SigningKey is a farm's ed25519 key that signs images.
type SigningKey struct {
	priv ed25519.PrivateKey
	// ID names the key: KeyID of its public key.
	ID string
}

// PublicKey is a key imagers trust: an ed25519 public key with its id and
// a name people recognise it by.
type PublicKey struct {
	Key  ed25519.PublicKey
	ID   string
	Name string
}

// KeyID is the first 8 bytes of the SHA-256 of an ed25519 public key, in
// hex: short enough to read, long enough never to collide in one farm.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new signing key.
func GenerateKey() (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return newSigningKey(priv), nil
}

func newSigningKey(priv ed25519.PrivateKey) *SigningKey {
	return &SigningKey{priv: priv, ID: KeyID(priv.Public().(ed25519.PublicKey))}
}

// Public returns the key's public half, named name.
func (k *SigningKey) Public(name string) PublicKey {
	pub := k.priv.Public().(ed25519.PublicKey)
	return PublicKey{Key: pub, ID: k.ID, Name: name}
}

// MarshalPEM returns the private key as a PKCS #8 PEM block.
func (k *SigningKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadSigningKey reads a PKCS #8 PEM ed25519 private key, as imagefarm key
// init writes it.
func LoadSigningKey(path string) (*SigningKey, error) {
	data, err := userpath.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM PRIVATE KEY block (make one with imagefarm key init)", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T, want ed25519", path, key)
	}
	return newSigningKey(priv), nil
}

// String is the key's line in a public key file:
// "imagefarm-ed25519 <base64 key> <name>".
func (p PublicKey) String() string {
	return strings.TrimSpace(PublicKeyType + " " + base64.StdEncoding.EncodeToString(p.Key) + " " + p.Name)
}

// ParsePublicKeys parses lines "imagefarm-ed25519 <base64> [name]";
// blank lines and lines starting with # are skipped.
func ParsePublicKeys(data []byte) ([]PublicKey, error) {
	var keys []PublicKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != PublicKeyType {
			return nil, fmt.Errorf("line %d: want %s <base64 key> [name]", n, PublicKeyType)
		}
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("line %d: not a base64 ed25519 public key", n)
		}
		keys = append(keys, PublicKey{Key: raw, ID: KeyID(raw), Name: strings.Join(f[2:], " ")})
	}
	return keys, sc.Err()
}

// KeyRing is the set of public keys an imager trusts.
type KeyRing struct {
	keys map[string]PublicKey
}

// NewKeyRing returns a ring of keys.
func NewKeyRing(keys ...PublicKey) *KeyRing {
	r := &KeyRing{keys: map[string]PublicKey{}}
	for _, k := range keys {
		r.keys[k.ID] = k
	}
	return r
}

// LoadKeyRing reads one or more public keys from the file at path.
func LoadKeyRing(path string) (*KeyRing, error) {
	data, err := userpath.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trusted keys: %w", err)
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("trusted keys %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, errors.New("trusted keys " + path + ": no key in the file")
	}
	return NewKeyRing(keys...), nil
}

// Has reports whether the key with id is in the ring.
func (r *KeyRing) Has(id string) bool {
	_, ok := r.keys[id]
	return ok
}

// IDs returns the ids of the keys, sorted.
func (r *KeyRing) IDs() []string {
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
