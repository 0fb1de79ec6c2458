package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/userpath"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// devTokenName names the dev farm's admin token.
const devTokenName = "dev"

// devToken is the dev farm's admin token, kept in file: the one written by
// an earlier run while the farm still knows it, else a new one (replacing
// a stale "dev" token). dev writes it to the farm's NATS directly, as only
// the host that runs the farm's NATS can, logged in with the controller's
// credentials file creds.
func devToken(ctx context.Context, natsURL, creds, file string) (string, error) {
	auth, err := natsauth.ConnectOptions(creds)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	// The server is this process's own, just started: a loaded machine
	// may take longer than nats.go's 2s to answer, never forever.
	nc, err := nats.Connect(natsURL, append(auth, nats.Name("imagefarm-dev-token"), nats.Timeout(30*time.Second))...)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	st, err := tokens.Open(ctx, js, 1)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	if b, err := userpath.ReadFile(file); err == nil {
		secret := strings.TrimSpace(string(b))
		if _, err := st.Lookup(ctx, secret); err == nil {
			return secret, nil
		}
	}
	// Forced: it may be the farm's only admin token, and is replaced at once.
	if _, err := st.Revoke(ctx, devTokenName, true); err != nil && !errors.Is(err, tokens.ErrUnknown) {
		return "", fmt.Errorf("dev token: %w", err)
	}
	_, secret, err := st.Create(ctx, devTokenName, imagefarmv1.Role_ROLE_ADMIN, "dev")
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	if err := tokens.WriteSecret(file, secret); err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	return secret, nil
}
