package tokens

import (
	"context"
	"os"
	"path/filepath"
)

// Bearer is the client side of a token: it sends the secret with every
// call, in the metadata "authorization: Bearer SECRET".
type Bearer struct {
	Secret string
	// Plaintext allows the secret on a connection without TLS. The CLI
	// allows it only to a loopback address, where nobody can listen in.
	Plaintext bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Secret}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: gRPC
// refuses to send the secret over plaintext unless Plaintext is set.
func (b Bearer) RequireTransportSecurity() bool { return !b.Plaintext }

// WriteSecret writes secret to file, readable by its owner only, replacing
// the file atomically.
func WriteSecret(file, secret string) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".token-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
