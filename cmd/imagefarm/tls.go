package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/pki"
)

// tlsFlags say how the controller's gRPC is secured: the files the
// controller serves with, or an imager or a client dials with.
type tlsFlags struct {
	ca       string // the farm CA, to verify the controller
	cert     string // this side's certificate: the controller's, an imager's, a client's
	key      string
	insecure bool // plaintext, no TLS at all
}

// orInsecure ends the errors about missing certificates.
const orInsecure = "(the farm CA: imagefarm ca init --dir DIR), or pass --insecure for plaintext on a trusted network"

// cliInsecureWarning is printed by every command that dials the controller
// without TLS.
const cliInsecureWarning = "imagefarm: INSECURE: no TLS: anyone on the network can read and change what this command and the controller say"

// addTLSFlags adds the TLS flags to root, for every command.
func addTLSFlags(root *cobra.Command, f *tlsFlags) {
	fl := root.PersistentFlags()
	fl.StringVar(&f.ca, "ca", os.Getenv("IMAGEFARM_CA"), "the farm CA certificate (ca.crt) that the controller is verified against (env IMAGEFARM_CA)")
	fl.StringVar(&f.cert, "tls-cert", os.Getenv("IMAGEFARM_TLS_CERT"),
		"certificate file: the controller's, an imager's node certificate, or a client's (optional) (env IMAGEFARM_TLS_CERT)")
	fl.StringVar(&f.key, "tls-key", os.Getenv("IMAGEFARM_TLS_KEY"), "key file of --tls-cert (env IMAGEFARM_TLS_KEY)")
	fl.BoolVar(&f.insecure, "insecure", false, "no TLS: serve or dial the controller in plaintext, with no identities (a lab on a trusted network only)")
}

// clientTLS is the TLS that the controller is dialed with: verified
// against the farm CA, with this side's certificate when given. It is nil
// with --insecure.
func (f *tlsFlags) clientTLS() (*tls.Config, error) {
	if f.insecure {
		return nil, nil
	}
	if f.ca == "" {
		return nil, fmt.Errorf("no farm CA to verify the controller: pass --ca FILE or set IMAGEFARM_CA to the farm's ca.crt %s", orInsecure)
	}
	return pki.ClientConfig(f.ca, f.cert, f.key)
}

// nodeTLS is an imager's clientTLS: it needs the certificate of node
// nodeID, issued by the farm CA and valid now, so that a wrong or expired
// file is named at start rather than refused by the controller.
func (f *tlsFlags) nodeTLS(nodeID string) (*tls.Config, error) {
	cfg, err := f.clientTLS()
	if cfg == nil || err != nil {
		return cfg, err
	}
	if len(cfg.Certificates) == 0 {
		return nil, fmt.Errorf("no node certificate: pass --tls-cert and --tls-key, which imagefarm ca issue --dir DIR --node %s writes %s", nodeID, orInsecure)
	}
	id, err := pki.VerifyClient(cfg.RootCAs, []*x509.Certificate{cfg.Certificates[0].Leaf}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %w", f.cert, err)
	}
	if id != (pki.Identity{Kind: pki.KindNode, Name: nodeID}) {
		return nil, fmt.Errorf("--tls-cert %s is the certificate of %s, not of node %q: issue one with imagefarm ca issue --node %s", f.cert, id, nodeID, nodeID)
	}
	return cfg, nil
}

// serverTLS is the controller's TLS and the farm CA (clientCA) that client
// certificates are verified against; both nil with --insecure.
func (f *tlsFlags) serverTLS(clientCA string) (*tls.Config, *x509.CertPool, error) {
	if f.insecure {
		return nil, nil, nil
	}
	if f.cert == "" || f.key == "" || clientCA == "" {
		return nil, nil, errors.New("the controller serves TLS: pass --tls-cert and --tls-key, which imagefarm ca issue --dir DIR --controller --host HOST writes, " +
			"and --client-ca, the farm's ca.crt " + orInsecure)
	}
	cfg, err := pki.ServerConfig(f.cert, f.key)
	if err != nil {
		return nil, nil, err
	}
	pool, err := pki.LoadPool(clientCA)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}
