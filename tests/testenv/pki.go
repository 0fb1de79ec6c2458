package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/internal/pki"
)

// PKI is a farm CA in a test's temporary folder, which issues certificates
// as the test asks: the files that imagefarm ca init and ca issue write.
type PKI struct {
	Dir string
	CA  *pki.CA
}

// NewPKI makes a farm CA in a new temporary folder.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{Dir: dir, CA: ca}
}

// CAFile is the CA's certificate, which clients verify the controller
// against.
func (p *PKI) CAFile() string { return filepath.Join(p.Dir, pki.CACertFile) }

// Issue writes a certificate for r into a new temporary folder, so that
// it replaces no other, and returns its files.
func (p *PKI) Issue(t testing.TB, r pki.Request) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := p.CA.IssueFiles(t.TempDir(), r)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ServerTLS is a controller's TLS on 127.0.0.1 or localhost.
func (p *PKI) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, key := p.Issue(t, pki.Request{Kind: pki.KindServer, Hosts: []string{"127.0.0.1", "localhost"}})
	cfg, err := pki.ServerConfig(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Pool is the CA as a pool, which a controller verifies client
// certificates against.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return pool
}

// ClientTLS is the TLS of a connection to the controller, verifying it
// against the CA, with the certificate of node id when id is not "".
func (p *PKI) ClientTLS(t testing.TB, node string) *tls.Config {
	t.Helper()
	var cert, key string
	if node != "" {
		cert, key = p.Issue(t, pki.Request{Kind: pki.KindNode, Name: node})
	}
	cfg, err := pki.ClientConfig(p.CAFile(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
