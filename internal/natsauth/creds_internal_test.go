package natsauth

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestHashCost: passwords Generate makes are hashed at bcrypt's minimum
// cost (a slow hash of 130 random bits protects nothing, and slowed every
// login past the server's first PING under load); a password a person
// wrote keeps the default cost.
func TestHashCost(t *testing.T) {
	for _, tt := range []struct {
		pass string
		want int
	}{
		{rand.Text(), bcrypt.MinCost},
		{"correct horse battery staple", bcrypt.DefaultCost},
		{strings.ToLower(rand.Text()), bcrypt.DefaultCost},
		{rand.Text()[:20], bcrypt.DefaultCost},
	} {
		if got := hashCost(tt.pass); got != tt.want {
			t.Errorf("hashCost(%q) = %d, want %d", tt.pass, got, tt.want)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ControllerCredsFile), []byte("imagefarm-controller:my own words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Generate(dir, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, ServerConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(conf), "$2a$04$"); n != 1 {
		t.Errorf("server config has %d hashes at cost 4, want 1 (node n1's generated password):\n%s", n, conf)
	}
	if n := strings.Count(string(conf), "$2a$10$"); n != 1 {
		t.Errorf("server config has %d hashes at cost 10, want 1 (the controller's own password):\n%s", n, conf)
	}
}
