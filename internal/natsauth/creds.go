package natsauth

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/userpath"
)

// ServerConfigFile is the name Generate gives the authorization block.
const ServerConfigFile = "nats-auth.conf"

// ErrBadCreds is returned for a credentials file that is neither a NATS
// .creds file nor USER:PASSWORD.
var ErrBadCreds = errors.New("natsauth: bad credentials file")

const jwtMarker = "-----BEGIN NATS USER JWT-----"

// ControllerCredsFile is the name Generate gives the controller's
// credentials file.
const ControllerCredsFile = "controller.nats-creds"

// ImagerCredsFile is the name of node nodeID's credentials file.
func ImagerCredsFile(nodeID string) string { return "node-" + nodeID + ".nats-creds" }

// ConnectOptions returns the options that log in with the credentials in
// file: a NATS .creds file (user JWT and nkey seed, for a server in
// operator mode) or one line USER:PASSWORD (for users in the server's
// configuration, as Generate writes them). An empty file name logs in as
// nobody.
func ConnectOptions(file string) ([]nats.Option, error) {
	if file == "" {
		return nil, nil
	}
	data, err := userpath.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("nats credentials: %w", err)
	}
	if bytes.Contains(data, []byte(jwtMarker)) {
		return []nats.Option{nats.UserCredentials(file)}, nil
	}
	user, pass, err := parseCreds(data)
	if err != nil {
		return nil, fmt.Errorf("nats credentials %s: %w", file, err)
	}
	return []nats.Option{nats.UserInfo(user, pass)}, nil
}

func parseCreds(data []byte) (user, pass string, err error) {
	user, pass, ok := strings.Cut(strings.TrimSpace(string(data)), ":")
	if !ok || user == "" || pass == "" || strings.ContainsAny(user+pass, "\n\r") {
		return "", "", fmt.Errorf("%w: want a NATS .creds file or one line USER:PASSWORD", ErrBadCreds)
	}
	return user, pass, nil
}

// Generate writes into dir the server's authorization block
// (ServerConfigFile) for the controller and nodes, and a credentials file
// for each (ControllerCredsFile, ImagerCredsFile), all readable by their
// owner only. A user whose credentials file is already there keeps its
// password, so nodes can be added without touching the others.
func Generate(dir string, nodes []string) error {
	users := []User{{Name: ControllerUser, Permissions: ControllerPermissions()}}
	files := []string{ControllerCredsFile}
	for _, n := range nodes {
		if err := ident.NodeID(n); err != nil {
			return err
		}
		users = append(users, User{Name: ImagerUser(n), Permissions: ImagerPermissions(n)})
		files = append(files, ImagerCredsFile(n))
	}
	for i := range users {
		if err := loadOrCreate(filepath.Join(dir, files[i]), &users[i]); err != nil {
			return err
		}
	}
	var conf bytes.Buffer
	if err := WriteServerConfig(&conf, users); err != nil {
		return err
	}
	return userpath.WriteFile(filepath.Join(dir, ServerConfigFile), conf.Bytes(), userpath.Options{Force: true, Perm: 0o600})
}

// loadOrCreate reads u's password from file, or makes one and writes it
// there, and hashes it.
func loadOrCreate(file string, u *User) error {
	data, err := userpath.ReadFile(file)
	switch {
	case err == nil:
		user, pass, err := parseCreds(data)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if user != u.Name {
			return fmt.Errorf("%s: %w: it is for user %q, not %q", file, ErrBadCreds, user, u.Name)
		}
		u.Password = pass
	case errors.Is(err, fs.ErrNotExist):
		u.Password = rand.Text()
		if err := userpath.WriteFile(file, []byte(u.Name+":"+u.Password+"\n"), userpath.Options{Perm: 0o600}); err != nil {
			return err
		}
	default:
		return err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(u.Password), hashCost(u.Password))
	if err != nil {
		return fmt.Errorf("hash password of %s: %w", u.Name, err)
	}
	u.PasswordHash = string(h)
	return nil
}

// hashCost is the bcrypt cost for a password's hash in the server
// configuration. A password Generate made (rand.Text: 26 base32 characters,
// 130 random bits) has nothing a slow hash would protect, as with the
// client API's tokens, so it gets bcrypt's minimum cost: the server checks
// it at every login, and at the default cost that check outlasts the 2 s
// in which the server expects a new client's first PONG on a loaded
// machine (a race-built dev farm failed its own logins). A password a
// person wrote gets the default cost.
func hashCost(pass string) int {
	if len(pass) >= len(rand.Text()) && strings.Trim(pass, base32Alphabet) == "" {
		return bcrypt.MinCost
	}
	return bcrypt.DefaultCost
}

// base32Alphabet is the alphabet of rand.Text.
const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
