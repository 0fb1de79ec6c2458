package state

import (
	"encoding/base32"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/imagefarm/imagefarm/internal/ident"
)

const (
	// MaxIDLen is the longest job, task or node id the store accepts.
	MaxIDLen = 128
	// MaxDriveIDLen is the longest drive id the store accepts, in bytes.
	MaxDriveIDLen = 255
)

// driveKeyEncoding turns a drive id into a key token. Drive ids come from
// serials, WWNs and file names, so they hold '.', ':' and worse, which a KV
// key cannot (a '.' would even split the key into two tokens). Base32 with
// the "extended hex" alphabet and no padding uses only [0-9A-V], keeps the
// byte order of ids in the order of keys, and decodes back exactly.
var driveKeyEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// ValidID checks a job, task or node id: 1 to MaxIDLen ASCII letters,
// digits, '-' or '_'. Such an id is used as it is in KV keys and in event
// subjects (imagefarm.events.<job_id>), where '.', '*', '>', spaces and
// '/' would change the key's or the subject's meaning. The set is the one
// controller/dispatch accepts for node ids, so every stored node can also
// receive assignments. Errors wrap ErrInvalidID.
func ValidID(id string) error {
	if !ident.Valid(id, MaxIDLen) {
		return fmt.Errorf("id %s: use 1 to %d letters, digits, '-' or '_': %w", ident.Quote(id), MaxIDLen, ErrInvalidID)
	}
	return nil
}

// ValidDriveID checks a drive id: 1 to MaxDriveIDLen bytes of printable
// UTF-8. Any such id can be stored, because its key token is encoded.
// Errors wrap ErrInvalidID.
func ValidDriveID(id string) error {
	if id == "" || len(id) > MaxDriveIDLen || !utf8.ValidString(id) ||
		strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return fmt.Errorf("drive id %s: use 1 to %d bytes of printable UTF-8: %w", ident.Quote(id), MaxDriveIDLen, ErrInvalidID)
	}
	return nil
}

func jobKey(jobID string) (string, error) {
	if err := ValidID(jobID); err != nil {
		return "", fmt.Errorf("job: %w", err)
	}
	return jobID, nil
}

// taskKey is "<job_id>.<task_id>", so a job's tasks are the keys
// "<job_id>.*" and GetJob reads them with one filtered watch.
func taskKey(jobID, taskID string) (string, error) {
	if _, err := jobKey(jobID); err != nil {
		return "", err
	}
	if err := ValidID(taskID); err != nil {
		return "", fmt.Errorf("task: %w", err)
	}
	return jobID + "." + taskID, nil
}

func nodeKey(nodeID string) (string, error) {
	if err := ValidID(nodeID); err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	return nodeID, nil
}

// driveKey is "<node_id>.<base32hex(drive_id)>", so a node's drives are the
// keys "<node_id>.*".
func driveKey(nodeID, driveID string) (string, error) {
	if _, err := nodeKey(nodeID); err != nil {
		return "", err
	}
	if err := ValidDriveID(driveID); err != nil {
		return "", err
	}
	return nodeID + "." + driveKeyEncoding.EncodeToString([]byte(driveID)), nil
}
