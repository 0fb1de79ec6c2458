package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// Kind is what a certificate is for.
type Kind string

const (
	// KindNode is an imager node's client certificate, bound to its node id.
	KindNode Kind = "node"
	// KindClient is a client certificate of a person or a program using the
	// client API, bound to a name.
	KindClient Kind = "client"
	// KindServer is the controller's server certificate, for the hosts it
	// is reached at.
	KindServer Kind = "server"
)

// uriScheme is the scheme of the URI SAN that binds a client certificate's
// identity: imagefarm://node/ID or imagefarm://client/NAME.
const uriScheme = "imagefarm"

// ErrUntrusted is returned for a client certificate that the farm CA did not
// issue, that has expired or is not valid yet, that is not for client
// authentication, or that binds no identity.
var ErrUntrusted = errors.New("certificate not trusted")

// Identity is who a client certificate names: a node (Kind KindNode, Name
// its node id) or a client (KindClient, Name its name).
type Identity struct {
	Kind Kind
	Name string
}

func (id Identity) String() string { return fmt.Sprintf("%s %s", id.Kind, ident.Quote(id.Name)) }

func (id Identity) uri() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: string(id.Kind), Path: "/" + id.Name}
}

// check refuses an identity that cannot be bound: a kind other than node or
// client, or a name that is not an ident.NodeID or ident.ClientName.
func (id Identity) check() error {
	switch id.Kind {
	case KindNode:
		return ident.NodeID(id.Name)
	case KindClient:
		return ident.ClientName(id.Name)
	}
	return fmt.Errorf("identity kind %q: want %q or %q", id.Kind, KindNode, KindClient)
}

// identityOf reads the identity a certificate binds: its one imagefarm URI
// SAN.
func identityOf(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme {
			found = append(found, Identity{Kind: Kind(u.Host), Name: strings.TrimPrefix(u.Path, "/")})
		}
	}
	if len(found) != 1 {
		return Identity{}, fmt.Errorf("%d imagefarm:// URIs, want one naming a node or a client", len(found))
	}
	return found[0], found[0].check()
}

// VerifyClient checks a client's certificate chain as the TLS handshake
// received it (leaf first) against the farm CA roots, for client
// authentication at now, and returns the identity the leaf binds. Every
// refusal wraps ErrUntrusted and names the certificate.
func VerifyClient(roots *x509.CertPool, chain []*x509.Certificate, now time.Time) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, fmt.Errorf("no certificate: %w", ErrUntrusted)
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var id Identity
	if err == nil {
		id, err = identityOf(leaf)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s: %w: %w", ident.Quote(leaf.Subject.CommonName), ErrUntrusted, err)
	}
	return id, nil
}
