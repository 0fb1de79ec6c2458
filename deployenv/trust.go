package deployenv

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Where a deploy environment built with the farm's trust holds it, in its
// initramfs (without the leading '/'): the farm CA the controller's TLS
// certificate is verified against, and the public keys every image it
// writes must be signed by.
const (
	CAFile          = "etc/imagefarm/ca.crt"
	TrustedKeysFile = "etc/imagefarm/trusted.pub"
)

// ErrBadTrust is wrapped by the error for a CA or key file build-env
// cannot put in an environment.
var ErrBadTrust = errors.New("deployenv: not a farm CA or signing keys")

// Trust is what env.json says of the trust an environment holds.
type Trust struct {
	// CASHA256 is the SHA-256 of the farm CA file it holds, "" for none.
	CASHA256 string `json:"ca_sha256,omitempty"`
	// KeyIDs are the ids of the image-signing keys it trusts, sorted;
	// none means it writes unsigned images (and says so).
	KeyIDs []string `json:"trusted_key_ids,omitempty"`
}

// trustFiles reads cfg's CA and key files, checks them, and returns the
// bytes to put at CAFile and TrustedKeysFile (nil for none): the keys of
// every file, each once, by id, so the same keys give the same bytes.
func trustFiles(cfg BuildConfig) (ca, keys []byte, t Trust, err error) {
	if cfg.CA != "" {
		if ca, err = readCA(cfg.CA); err != nil {
			return nil, nil, t, err
		}
		sum := sha256.Sum256(ca)
		t.CASHA256 = hex.EncodeToString(sum[:])
	}
	var all []catalog.PublicKey
	for _, file := range cfg.TrustedKeys {
		pub, err := readKeys(file)
		if err != nil {
			return nil, nil, t, err
		}
		all = append(all, pub...)
	}
	slices.SortFunc(all, func(a, b catalog.PublicKey) int { return cmp.Compare(a.ID, b.ID) })
	all = slices.CompactFunc(all, func(a, b catalog.PublicKey) bool { return a.ID == b.ID })
	var b strings.Builder
	for _, k := range all {
		b.WriteString(k.String() + "\n")
		t.KeyIDs = append(t.KeyIDs, k.ID)
	}
	if len(all) > 0 {
		keys = []byte(b.String())
	}
	return ca, keys, t, nil
}

// readKeys reads a file of image-signing public keys: at least one.
func readKeys(file string) ([]catalog.PublicKey, error) {
	data, err := userpath.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("trusted keys: %w", err)
	}
	pub, err := catalog.ParsePublicKeys(data)
	if err == nil && len(pub) == 0 {
		err = errors.New("no key in the file")
	}
	if err != nil {
		return nil, fmt.Errorf("trusted keys %s: %w (give the farm's signing.pub, as imagefarm key init wrote it): %w", file, err, ErrBadTrust)
	}
	return pub, nil
}

// readCA reads a farm CA file: PEM certificates, every one a CA.
func readCA(file string) ([]byte, error) {
	data, err := userpath.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("farm CA: %w", err)
	}
	certs, err := parsePEMCerts(data)
	if err != nil {
		return nil, fmt.Errorf("farm CA %s: %w (give the farm's ca.crt, as imagefarm pki init wrote it): %w", file, err, ErrBadTrust)
	}
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("farm CA %s: the certificate for %q is not a CA (give the farm's ca.crt, not a server or client certificate): %w",
				file, c.Subject.CommonName, ErrBadTrust)
		}
	}
	return data, nil
}

// parsePEMCerts parses every certificate of PEM data: at least one, and
// nothing else.
func parsePEMCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if strings.TrimSpace(string(rest)) != "" {
				return nil, errors.New("text that is not a PEM certificate")
			}
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM %s, not a CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}
