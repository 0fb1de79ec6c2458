package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/imagefarm/imagefarm/internal/pki"
)

// devNode is the node id of the dev farm's one imager.
const devNode = "dev-1"

// devTLS is the dev farm's TLS: the controller's, its node's, and the
// flags of a client (the demo's commands, another terminal's).
type devTLS struct {
	server    *tls.Config
	clientCAs *x509.CertPool
	node      *tls.Config
	client    tlsFlags
}

// devCerts makes the dev farm's CA in dir, or takes the one an earlier run
// made, and issues anew the controller's certificate for the hosts of
// listen, node dev-1's and client dev's, so that none is ever expired.
func devCerts(dir, listen string) (devTLS, error) {
	var t devTLS
	ca, err := pki.LoadCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = pki.InitCA(dir)
	}
	if err != nil {
		return t, err
	}
	var files [3]tlsFlags
	for i, r := range []pki.Request{
		{Kind: pki.KindServer, Hosts: listenHosts(listen)},
		{Kind: pki.KindNode, Name: devNode},
		{Kind: pki.KindClient, Name: "dev"},
	} {
		files[i].ca = filepath.Join(dir, pki.CACertFile)
		if files[i].cert, files[i].key, err = ca.IssueFiles(dir, r); err != nil {
			return t, err
		}
	}
	if t.server, t.clientCAs, err = files[0].serverTLS(files[0].ca); err != nil {
		return t, err
	}
	t.node, err = files[1].nodeTLS(devNode)
	t.client = files[2]
	return t, err
}

// listenHosts are the names a controller listening on listen is reached
// at from this machine: the loopback names, and its host, or the machine's
// name when it listens on every address.
func listenHosts(listen string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _ = os.Hostname()
	}
	if host != "" && !slices.Contains(hosts, host) {
		hosts = append(hosts, host)
	}
	return hosts
}

// dialAddr is the address to dial a listener at: its own, or loopback for
// one on every address, which the certificate names.
func dialAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", port)
}
