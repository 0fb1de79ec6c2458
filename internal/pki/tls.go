package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// ServerConfig is the controller's TLS: its certificate and key, TLS 1.3
// only. Clients are asked for a certificate, but the handshake does not
// verify it: the controller does, per call, with VerifyClient against the
// farm CA, so that a refused certificate gets an error saying why instead
// of a dropped connection, and a client without one still reaches the calls
// that need none. The request names no CA (ClientCAs is nil), so that a
// client sends the certificate it has, even one of another CA, and is told
// so, rather than sending none.
func ServerConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("controller certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13}, nil
}

// ClientConfig is the TLS of a connection to the controller: the
// controller's certificate is verified against the farm CA in caFile, and
// certFile and keyFile, when given, are this side's certificate (an
// imager's node certificate, or a client's).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a certificate needs its key and a key its certificate: give both files or neither")
	}
	if certFile != "" {
		cert, err := loadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadPool reads the PEM certificates in file, the farm CA.
func LoadPool(file string) (*x509.CertPool, error) {
	data, err := userpath.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("farm CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("farm CA: no PEM certificate in %s", file)
	}
	return pool, nil
}

// loadKeyPair is tls.LoadX509KeyPair for files a person named
// (userpath.ReadFile: a FIFO or a device is refused, not waited on).
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := userpath.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := userpath.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}
