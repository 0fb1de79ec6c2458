package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

const (
	// CAValidity is how long the farm CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is how long an issued certificate is valid unless
	// asked otherwise.
	DefaultValidity = 365 * 24 * time.Hour
	// clockSkew backdates every certificate, so that a host whose clock is
	// a little behind accepts one issued a moment ago.
	clockSkew = time.Hour
)

// Files of a PKI folder. Issued certificates are named by FileNames.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key" // mode 0600; keep it off the farm's hosts
)

// CA is the farm's certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// NewCA makes a CA valid from now for CAValidity, with a new ECDSA P-256
// key. It is not saved: see InitCA.
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		// A name of its own, so that a certificate of another farm's CA
		// is told apart in errors.
		Subject:               pkix.Name{Organization: []string{"imagefarm"}, CommonName: "imagefarm CA " + now.UTC().Format("2006-01-02") + " " + rand.Text()[:6]},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs leaves only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key}, nil
}

// InitCA makes a CA and saves it in dir as CACertFile and CAKeyFile (mode
// 0600). It never overwrites a CA: every certificate it issued would stop
// being trusted.
func InitCA(dir string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a CA, which ca init never overwrites: %w", dir, fs.ErrExist)
	}
	ca, err := NewCA(time.Now())
	if err != nil {
		return nil, err
	}
	if err := userpath.MakeFolder(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := keyPEM(ca.key)
	if err != nil {
		return nil, err
	}
	if err := userpath.WriteFile(filepath.Join(dir, CAKeyFile), key, userpath.Options{Perm: 0o600}); err != nil {
		return nil, err
	}
	return ca, userpath.WriteFile(filepath.Join(dir, CACertFile), certPEM(ca.Cert), userpath.Options{Perm: 0o644, Force: true})
}

// LoadCA reads the CA saved in dir.
func LoadCA(dir string) (*CA, error) {
	pair, err := loadKeyPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA from %s (make one with imagefarm ca init --dir %s): %w", dir, dir, err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !pair.Leaf.IsCA || !ok {
		return nil, fmt.Errorf("load CA from %s: %s is not a CA certificate", dir, CACertFile)
	}
	return &CA{Cert: pair.Leaf, key: key}, nil
}

// CertPEM is the CA's certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte { return certPEM(ca.Cert) }

// Request says what certificate to issue.
type Request struct {
	Kind Kind
	// Name is the node id (KindNode) or the client's name (KindClient),
	// bound in the certificate; unused for KindServer.
	Name string
	// Hosts are the DNS names and IP addresses the controller is reached
	// at (KindServer only).
	Hosts []string
	// ValidFor is how long the certificate is valid; DefaultValidity when 0.
	ValidFor time.Duration
	// NotBefore is when it becomes valid; now, less some clock skew, when
	// zero.
	NotBefore time.Time
}

// FileNames are the names of the certificate and key files of r in a PKI
// folder: node-ID, client-NAME or controller, with .crt and .key.
func FileNames(r Request) (cert, key string) {
	base := "controller"
	if r.Kind != KindServer {
		base = string(r.Kind) + "-" + r.Name
	}
	return base + ".crt", base + ".key"
}

// Issue makes a certificate with a new ECDSA P-256 key, signed by the CA,
// and returns both PEM-encoded.
func (ca *CA) Issue(r Request) (cert, key []byte, err error) {
	tmpl, err := r.template()
	if err != nil {
		return nil, nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	c, err := sign(tmpl, ca.Cert, k.Public(), ca.key)
	if err != nil {
		return nil, nil, err
	}
	if key, err = keyPEM(k); err != nil {
		return nil, nil, err
	}
	return certPEM(c), key, nil
}

// IssueFiles issues r and writes it into dir under its FileNames, the key
// with mode 0600, replacing an older one. It returns the files' paths.
func (ca *CA) IssueFiles(dir string, r Request) (certPath, keyPath string, err error) {
	cert, key, err := ca.Issue(r)
	if err != nil {
		return "", "", err
	}
	if err := userpath.MakeFolder(dir, 0o755); err != nil {
		return "", "", err
	}
	certName, keyName := FileNames(r)
	certPath, keyPath = filepath.Join(dir, certName), filepath.Join(dir, keyName)
	replace := userpath.Options{Force: true, Perm: 0o600}
	if err := userpath.WriteFile(keyPath, key, replace); err != nil {
		return "", "", err
	}
	replace.Perm = 0o644
	return certPath, keyPath, userpath.WriteFile(certPath, cert, replace)
}

// template is the certificate r asks for, not signed yet.
func (r Request) template() (*x509.Certificate, error) {
	notBefore := r.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-clockSkew)
	}
	validFor := r.ValidFor
	if validFor <= 0 {
		validFor = DefaultValidity
	}
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{Organization: []string{"imagefarm"}, CommonName: r.Name},
		NotBefore: notBefore,
		NotAfter:  notBefore.Add(validFor),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	switch r.Kind {
	case KindServer:
		if len(r.Hosts) == 0 {
			return nil, errors.New("controller certificate: no host: name the DNS names and IP addresses it is reached at")
		}
		tmpl.Subject.CommonName = "imagefarm controller"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range r.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	default:
		id := Identity{Kind: r.Kind, Name: r.Name}
		if err := id.check(); err != nil {
			return nil, err
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.URIs = []*url.URL{id.uri()}
	}
	return tmpl, nil
}
