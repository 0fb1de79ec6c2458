package tokens

import (
	"context"

	"github.com/imagefarm/imagefarm/internal/userpath"
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
// the file atomically: file must be new or a regular file
// (userpath.Create).
func WriteSecret(file, secret string) error {
	return userpath.WriteFile(file, []byte(secret+"\n"), userpath.Options{Force: true, Perm: 0o600})
}
