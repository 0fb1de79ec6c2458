package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/pki"
)

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *pki.CA, r pki.Request) *x509.Certificate {
	t.Helper()
	certPEM, _, err := ca.Issue(r)
	if err != nil {
		t.Fatalf("Issue(%+v) = %v", r, err)
	}
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(ca *pki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func TestVerifyClient(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	now := time.Now()
	node := pki.Request{Kind: pki.KindNode, Name: "bench-3"}
	expired := node
	expired.NotBefore, expired.ValidFor = now.Add(-48*time.Hour), time.Hour
	future := node
	future.NotBefore = now.Add(48 * time.Hour)
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  pki.Identity
		err   string // in the error; "" for none
	}{
		{"node", []*x509.Certificate{issue(t, ca, node)}, pki.Identity{Kind: pki.KindNode, Name: "bench-3"}, ""},
		{"client", []*x509.Certificate{issue(t, ca, pki.Request{Kind: pki.KindClient, Name: "alice"})}, pki.Identity{Kind: pki.KindClient, Name: "alice"}, ""},
		{"another CA", []*x509.Certificate{issue(t, other, node)}, pki.Identity{}, "unknown authority"},
		{"expired", []*x509.Certificate{issue(t, ca, expired)}, pki.Identity{}, "expired"},
		{"not valid yet", []*x509.Certificate{issue(t, ca, future)}, pki.Identity{}, "not yet valid"},
		{"server certificate", []*x509.Certificate{issue(t, ca, pki.Request{Kind: pki.KindServer, Hosts: []string{"ctl"}})}, pki.Identity{}, "usage"},
		{"the CA itself", []*x509.Certificate{ca.Cert}, pki.Identity{}, "imagefarm:// URIs"},
		{"none", nil, pki.Identity{}, "no certificate"},
	} {
		id, err := pki.VerifyClient(pool(ca), tc.chain, now)
		if id != tc.want || (tc.err == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.err) || !errors.Is(err, pki.ErrUntrusted))) {
			t.Errorf("%s: VerifyClient() = %v, %v; want %v, an ErrUntrusted containing %q", tc.name, id, err, tc.want, tc.err)
		}
	}
}

func TestIssueRefusesWhatCannotBeBound(t *testing.T) {
	ca := newCA(t)
	for _, r := range []pki.Request{
		{Kind: pki.KindNode},
		{Kind: pki.KindNode, Name: "../x"},
		{Kind: pki.KindNode, Name: "a.b"},
		{Kind: pki.KindClient, Name: strings.Repeat("x", ident.MaxClientNameLen+1)},
		{Kind: pki.KindServer},
		{Kind: "admin", Name: "x"},
	} {
		if _, _, err := ca.Issue(r); err == nil {
			t.Errorf("Issue(%+v) = nil error, want a refusal", r)
		}
	}
}

func TestInitLoadAndIssueFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.InitCA(dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("InitCA() over a CA = %v, want fs.ErrExist", err)
	}
	loaded, err := pki.LoadCA(dir)
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA() = %v, %v; want the CA InitCA made", loaded, err)
	}
	certPath, keyPath, err := loaded.IssueFiles(dir, pki.Request{Kind: pki.KindNode, Name: "n1"})
	if err != nil || filepath.Base(certPath) != "node-n1.crt" || filepath.Base(keyPath) != "node-n1.key" {
		t.Fatalf("IssueFiles() = %s, %s, %v", certPath, keyPath, err)
	}
	for _, f := range []struct {
		name string
		mode fs.FileMode
	}{{pki.CAKeyFile, 0o600}, {pki.CACertFile, 0o644}, {"node-n1.key", 0o600}, {"node-n1.crt", 0o644}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: %v, %v; want mode %v", f.name, fi.Mode(), err, f.mode)
		}
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := pki.VerifyClient(pool(ca), []*x509.Certificate{pair.Leaf}, time.Now()); err != nil || id.Name != "n1" {
		t.Errorf("VerifyClient(issued by the loaded CA) = %v, %v; want node n1", id, err)
	}
	if _, err := pki.LoadCA(t.TempDir()); err == nil || !strings.Contains(err.Error(), "imagefarm ca init") {
		t.Errorf("LoadCA(empty folder) = %v, want an error saying how to make one", err)
	}
}

// TestTLSConfigs checks a handshake between ServerConfig and ClientConfig:
// the controller verified by host, the client's certificate received for
// VerifyClient.
func TestTLSConfigs(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, _ := ca.IssueFiles(dir, pki.Request{Kind: pki.KindServer, Hosts: []string{"127.0.0.1", "ctl.depot.lan"}})
	nodeCert, nodeKey, _ := ca.IssueFiles(dir, pki.Request{Kind: pki.KindNode, Name: "n1"})
	otherDir := t.TempDir()
	if _, err := pki.InitCA(otherDir); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, pki.CACertFile)
	server, err := pki.ServerConfig(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ca, host string
		cert, key      string
		ok             bool
	}{
		{"by IP with a node certificate", caFile, "127.0.0.1", nodeCert, nodeKey, true},
		{"by name without a certificate", caFile, "ctl.depot.lan", "", "", true},
		{"a host not in the certificate", caFile, "other.lan", "", "", false},
		{"another farm's CA", filepath.Join(otherDir, pki.CACertFile), "127.0.0.1", "", "", false},
	} {
		client, err := pki.ClientConfig(tc.ca, tc.cert, tc.key)
		if err != nil {
			t.Fatal(err)
		}
		client.ServerName = tc.host
		state, err := handshake(server, client)
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err == nil && tc.cert != "" {
			if id, err := pki.VerifyClient(pool(ca), state.PeerCertificates, time.Now()); err != nil || id.Name != "n1" {
				t.Errorf("%s: the server verified %v, %v; want node n1", tc.name, id, err)
			}
		}
	}
	if _, err := pki.ClientConfig(caFile, nodeCert, ""); err == nil {
		t.Errorf("ClientConfig(a certificate without its key) = nil error")
	}
}

// handshake runs a TLS handshake over a pipe and returns what the server
// saw.
func handshake(server, client *tls.Config) (tls.ConnectionState, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, server)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake(); a.Close() }()
	err := tls.Client(b, client).Handshake()
	if serr := <-done; err == nil {
		err = serr
	}
	return srv.ConnectionState(), err
}
