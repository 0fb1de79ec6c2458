package reset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// StateStore keeps what a reset must not lose to a power cut: the keep-list
// capture and how far the reset got. The farm supplies one that saves to the
// controller or the node cache; DirState is a folder.
type StateStore interface {
	// Get returns what was saved under name, or an error wrapping
	// fs.ErrNotExist when nothing was.
	Get(ctx context.Context, name string) ([]byte, error)
	// Put saves data under name; once it returns, the data survives a
	// power cut.
	Put(ctx context.Context, name string, data []byte) error
}

// The names Run saves under.
const (
	stateRecord = "reset.json"
	stateKeep   = "keep.wim"
)

// record is the state of a reset between Runs.
type record struct {
	Step     Step       `json:"step"`      // the last step finished
	DiskGUID string     `json:"disk_guid"` // GPT disk GUID
	Layout   Layout     `json:"layout"`
	Kept     []KeptFile `json:"kept"`
	KeepSHA  string     `json:"keep_sha256"` // of the keep capture saved beside
	Report   *Report    `json:"report,omitempty"`
}

// loadRecord reads the record of a reset in progress; nil when none.
func loadRecord(ctx context.Context, s StateStore) (*record, error) {
	b, err := s.Get(ctx, stateRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", stateRecord, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read state %s: %w: %w", stateRecord, ErrBadInput, err)
	}
	return &r, nil
}

// saveRecord saves r.
func saveRecord(ctx context.Context, s StateStore, r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := s.Put(ctx, stateRecord, b); err != nil {
		return fmt.Errorf("save state %s: %w", stateRecord, err)
	}
	return nil
}

// loadKeep reads the keep capture and checks it against the record.
func loadKeep(ctx context.Context, s StateStore, r *record) ([]byte, error) {
	b, err := s.Get(ctx, stateKeep)
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", stateKeep, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != r.KeepSHA {
		return nil, fmt.Errorf("state %s: sha256 %s, want %s: %w: the keep-list saved before the volume was re-created is damaged; restore the state or the kept files by hand", stateKeep, got, r.KeepSHA, ErrBadInput)
	}
	return b, nil
}

// DirState is a StateStore in a folder, each name a file written
// atomically and synced.
type DirState string

// Get reads the file name in the folder.
func (d DirState) Get(_ context.Context, name string) ([]byte, error) {
	if err := checkStateName(name); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(string(d), name))
}

// Put writes the file name in the folder through a synced temporary file
// renamed into place, and syncs the folder.
func (d DirState) Put(_ context.Context, name string, data []byte) error {
	if err := checkStateName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(string(d), "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(string(d), name))
	}
	if err != nil {
		return err
	}
	dir, err := os.Open(string(d))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func checkStateName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("state name %q: %w", name, ErrBadInput)
	}
	return nil
}
