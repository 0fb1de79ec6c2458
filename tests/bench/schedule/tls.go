package main

import (
	"path/filepath"

	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/internal/pki"
)

// farmTLS is the benchmark farm's CA, in a folder of its own, which issues
// the controller's certificate and one per simulated node, as in a deploy.
type farmTLS struct {
	dir string
	ca  *pki.CA
}

func newFarmTLS(dir string) (*farmTLS, error) {
	ca, err := pki.InitCA(dir)
	if err != nil {
		return nil, err
	}
	return &farmTLS{dir: dir, ca: ca}, nil
}

// controllerFlags issues the controller's certificate for 127.0.0.1 and
// returns the flags that serve it.
func (f *farmTLS) controllerFlags() ([]string, error) {
	cert, key, err := f.ca.IssueFiles(f.dir, pki.Request{Kind: pki.KindServer, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	return []string{"--tls-cert", cert, "--tls-key", key, "--client-ca", filepath.Join(f.dir, pki.CACertFile)}, nil
}

// creds dial the controller, verified against the CA, with the certificate
// of node when node is not "".
func (f *farmTLS) creds(node string) (credentials.TransportCredentials, error) {
	var cert, key string
	if node != "" {
		var err error
		if cert, key, err = f.ca.IssueFiles(f.dir, pki.Request{Kind: pki.KindNode, Name: node}); err != nil {
			return nil, err
		}
	}
	cfg, err := pki.ClientConfig(filepath.Join(f.dir, pki.CACertFile), cert, key)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
