package imager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Trust is what a Writer checks an image against after reading its
// manifest and before fetching any of its chunks or opening a drive.
type Trust struct {
	// Keys are the keys an image must be signed by. Nil writes unsigned
	// images (imagefarm imager --allow-unsigned).
	Keys *catalog.KeyRing
	// Accepted, if set, refuses a manifest older than the newest one
	// this node has accepted for the same image name.
	Accepted *Accepted
}

// AcceptedFile is the file in a node cache's state folder that records
// the newest manifest accepted per image name.
const AcceptedFile = "accepted-images.json"

// agentTrust is the Trust of an agent: its keys, and the images accepted
// recorded in its node cache's folder.
func agentTrust(cfg AgentConfig, log *slog.Logger) (Trust, error) {
	t := Trust{Keys: cfg.TrustedKeys}
	if t.Keys == nil {
		log.Warn("UNSIGNED IMAGES ALLOWED: this imager writes images without checking who signed them (--allow-unsigned); " +
			"give it the farm's public key with --trusted-keys FILE")
	}
	if cfg.Drives.CacheDir == "" {
		log.Warn("no node cache folder: images older than those already written are not refused")
		return t, nil
	}
	acc, err := OpenAccepted(filepath.Join(cfg.Drives.CacheDir, catalog.CacheStateDir, AcceptedFile))
	if err != nil {
		return Trust{}, fmt.Errorf("imager agent: %w", err)
	}
	t.Accepted = acc
	return t, nil
}

// SetTrust makes w check every image it runs tasks for against t.
func (w *Writer) SetTrust(t Trust) { w.trust = t }

// ErrRollback is returned for a manifest older than one the node has
// already accepted for the same image name.
var ErrRollback = errors.New("imager: image rollback refused")

// RollbackError names the refused manifest and the newer one accepted.
type RollbackError struct {
	Name             string
	Version, Newest  string
	Created, NewestT time.Time
}

func (e *RollbackError) Error() string {
	return fmt.Sprintf("%v: %s:%s (created %s) is older than %s:%s (created %s), which this node has already accepted; "+
		"to go back, push the older content again as a new version",
		ErrRollback, e.Name, e.Version, e.Created.Format(time.RFC3339Nano), e.Name, e.Newest, e.NewestT.Format(time.RFC3339Nano))
}

func (e *RollbackError) Unwrap() error { return ErrRollback }

// admit checks the image of a batch of tasks: its signature, that it is
// the image the assignment names, and that it is no rollback.
func (w *Writer) admit(ctx context.Context, m *catalog.Manifest, digest, imageRef string) error {
	if w.trust.Keys != nil {
		id, err := w.cat.Verify(ctx, m, digest, w.trust.Keys)
		if err != nil {
			return err
		}
		// A ref of one name moved to a signed image of another.
		if ref, err := catalog.ParseRef(imageRef); err == nil && ref.Name != m.Name {
			return fmt.Errorf("%w: assigned as %s, but %s is signed as %s:%s by key %s",
				catalog.ErrSignatureInvalid, imageRef, digest, m.Name, m.Version, id)
		}
		w.log.Debug("image signature verified", "image", m.Name+":"+m.Version, "digest", digest, "key_id", id)
	}
	if w.trust.Accepted != nil {
		return w.trust.Accepted.Admit(m, digest)
	}
	return nil
}

// Accepted remembers, per image name, the newest manifest a node has
// accepted, in a small JSON file replaced atomically.
type Accepted struct {
	path string
	mu   sync.Mutex
}

type acceptedImage struct {
	Version string    `json:"version"`
	Created time.Time `json:"created"`
	Digest  string    `json:"digest"`
}

// OpenAccepted returns the record kept in the file at path, creating its
// folder; the file itself is written on the first accepted image.
func OpenAccepted(path string) (*Accepted, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("accepted images: %w", err)
	}
	a := &Accepted{path: path}
	if _, err := a.read(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Accepted) read() (map[string]acceptedImage, error) {
	images := map[string]acceptedImage{}
	data, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return images, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &images)
	}
	if err != nil {
		return nil, fmt.Errorf("accepted images %s: %w", a.path, err)
	}
	return images, nil
}

// Admit refuses m with a *RollbackError if it was created before the
// newest manifest accepted for its name, and otherwise records it if it
// is newer.
func (a *Accepted) Admit(m *catalog.Manifest, digest string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	images, err := a.read()
	if err != nil {
		return err
	}
	newest, seen := images[m.Name]
	switch {
	case seen && m.Created.Before(newest.Created):
		return &RollbackError{Name: m.Name, Version: m.Version, Created: m.Created, Newest: newest.Version, NewestT: newest.Created}
	case seen && !m.Created.After(newest.Created):
		return nil
	}
	images[m.Name] = acceptedImage{Version: m.Version, Created: m.Created, Digest: digest}
	return a.write(images)
}

// write replaces the file atomically: a crash leaves the old record or
// the new one, never half of one.
func (a *Accepted) write(images map[string]acceptedImage) error {
	data, err := json.MarshalIndent(images, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(a.path), ".accepted-*")
	if err != nil {
		return fmt.Errorf("accepted images: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), a.path)
	}
	if err != nil {
		return fmt.Errorf("accepted images %s: %w", a.path, err)
	}
	return nil
}
