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
	if acc.Len() == 0 {
		log.Warn("no accepted images recorded: rollbacks are refused from the first image this node accepts "+
			"(a new node, or its node cache was removed while it was stopped)", "path", acc.path)
	}
	t.Accepted = acc
	return t, nil
}

// recoverCache makes the node cache and the accepted-images record whole
// again if the cache's folder was removed under the running node, before
// a batch is admitted. Nothing is lost but chunks to fetch again: the
// record is written back from memory, so rollbacks are still refused.
func (w *Writer) recoverCache() error {
	if c := w.cat.Cache(); c != nil {
		recreated, err := c.Recover()
		if err != nil {
			return err
		}
		if recreated {
			w.log.Error("NODE CACHE REMOVED while this imager ran: made it again; its chunks will be fetched again", "cache", c.Dir())
		}
	}
	if a := w.trust.Accepted; a != nil {
		restored, err := a.Restore()
		if err != nil {
			return fmt.Errorf("the accepted-images record was removed (node cache wiped?) and cannot be written again: %w", err)
		}
		if restored {
			w.log.Error("ACCEPTED-IMAGES RECORD REMOVED while this imager ran: wrote it again from memory; rollbacks are still refused",
				"path", a.path, "images", a.Len())
		}
	}
	return nil
}

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

// admit checks the image of a batch of tasks: that it goes on a drive
// (the controller refuses other images at submit; a job stored before it
// did is refused here), its signature, that it is the image the assignment
// names, and that it is no rollback.
func (w *Writer) admit(ctx context.Context, m *catalog.Manifest, digest, imageRef string) error {
	if err := m.ForDrive(); err != nil {
		return err
	}
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
// accepted, in a small JSON file replaced atomically. The record read at
// open and every image accepted since are kept in memory too, and that
// copy rules: a file removed while the node runs (its node cache wiped) is
// written again from it, so the node's rollback protection outlives the
// file. Only the process that owns the node cache may open it.
type Accepted struct {
	path string

	mu     sync.Mutex
	images map[string]acceptedImage
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
	images := map[string]acceptedImage{}
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &images)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("accepted images %s: %w", path, err)
	}
	return &Accepted{path: path, images: images}, nil
}

// Len is how many image names the record holds.
func (a *Accepted) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.images)
}

// Restore writes the file again when it is gone and the record is not
// empty, and reports whether it did.
func (a *Accepted) Restore() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := os.Stat(a.path); !errors.Is(err, os.ErrNotExist) || len(a.images) == 0 {
		return false, nil
	}
	return true, a.write()
}

// Admit refuses m with a *RollbackError if it was created before the
// newest manifest accepted for its name, and otherwise records it if it
// is newer.
func (a *Accepted) Admit(m *catalog.Manifest, digest string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	newest, seen := a.images[m.Name]
	switch {
	case seen && m.Created.Before(newest.Created):
		return &RollbackError{Name: m.Name, Version: m.Version, Created: m.Created, Newest: newest.Version, NewestT: newest.Created}
	case seen && !m.Created.After(newest.Created):
		return nil
	}
	a.images[m.Name] = acceptedImage{Version: m.Version, Created: m.Created, Digest: digest}
	if err := a.write(); err != nil {
		if seen {
			a.images[m.Name] = newest
		} else {
			delete(a.images, m.Name)
		}
		return err
	}
	return nil
}

// write replaces the file atomically with the record: a crash leaves the
// old record or the new one, never half of one. It makes the folder again
// if it was removed. Called with a.mu held.
func (a *Accepted) write() error {
	data, err := json.MarshalIndent(a.images, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.path), 0o755); err != nil {
		return fmt.Errorf("accepted images: %w", err)
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
