package enroll

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

func openTokens(t *testing.T) (*Tokens, *Credentials) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := OpenTokens(t.Context(), js, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := OpenCredentials(t.Context(), js, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok, cr
}

const mac = "52:54:00:12:34:56"

// TestTokenRedeemedOnceUnderARace: of many redeems of one token at once,
// exactly one wins; the others are told it was used.
func TestTokenRedeemedOnceUnderARace(t *testing.T) {
	tok, _ := openTokens(t)
	secret, _, err := tok.Issue(t.Context(), mac, "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = tok.Redeem(t.Context(), secret, mac)
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrUsed):
			t.Errorf("redeem %d = %v, want nil or ErrUsed", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d redeems won, want exactly 1", won)
	}
}

// TestTokenRefusals: a replay, another MAC, an expired token, an unknown
// one and a secret that is not a boot token are each refused with their
// own error, and a refused redeem does not use the token up.
func TestTokenRefusals(t *testing.T) {
	tok, _ := openTokens(t)
	ctx := t.Context()
	secret, _, _ := tok.Issue(ctx, mac, "dev-1")
	if _, err := tok.Redeem(ctx, secret, "52:54:00:00:00:01"); !errors.Is(err, ErrWrongMAC) {
		t.Errorf("Redeem(other MAC) = %v, want ErrWrongMAC", err)
	}
	g, err := tok.Redeem(ctx, secret, mac)
	if err != nil || g.DeviceID != "dev-1" || g.MAC != mac {
		t.Fatalf("Redeem after a refusal = %+v, %v; want the grant (a refusal must not use the token)", g, err)
	}
	if _, err := tok.Redeem(ctx, secret, mac); !errors.Is(err, ErrUsed) {
		t.Errorf("Redeem(replay) = %v, want ErrUsed", err)
	}
	old, _, _ := tok.Issue(ctx, mac, "")
	tok.now = func() time.Time { return time.Now().Add(time.Hour) }
	if _, err := tok.Redeem(ctx, old, mac); !errors.Is(err, ErrExpired) {
		t.Errorf("Redeem(expired) = %v, want ErrExpired", err)
	}
	for _, s := range []string{TokenPrefix + "forged", "ift_not-a-boot-token", ""} {
		if _, err := tok.Redeem(ctx, s, mac); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("Redeem(%q) = %v, want ErrUnknownToken", s, err)
		}
	}
}

// TestCredentialNamesItsDeviceUntilItExpires.
func TestCredentialNamesItsDeviceUntilItExpires(t *testing.T) {
	_, cr := openTokens(t)
	ctx := t.Context()
	secret, _, err := cr.Issue(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	who, err := cr.Device(ctx, secret)
	if err != nil || who.DeviceID != "dev-1" || who.Session == "" {
		t.Fatalf("Device = %+v, %v; want dev-1 with a session", who, err)
	}
	for _, s := range []string{CredentialPrefix + "forged", "ifb_x", ""} {
		if _, err := cr.Device(ctx, s); !errors.Is(err, ErrNoCredential) {
			t.Errorf("Device(%q) = %v, want ErrNoCredential", s, err)
		}
	}
	cr.now = func() time.Time { return time.Now().Add(time.Hour) }
	if _, err := cr.Device(ctx, secret); !errors.Is(err, ErrNoCredential) {
		t.Errorf("Device(expired) = %v, want ErrNoCredential", err)
	}
}
