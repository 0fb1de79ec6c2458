package state

import (
	"encoding/base32"
	"fmt"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// driveKeyEncoding turns a drive id into a key token. Drive ids come from
// serials, WWNs and file names, so they hold '.' and ':', which a KV key
// cannot (a '.' would even split the key into two tokens). Base32 with
// the "extended hex" alphabet and no padding uses only [0-9A-V], keeps the
// byte order of ids in the order of keys, and decodes back exactly.
var driveKeyEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// invalidID wraps the error of an ident checker with ErrInvalidID. Job,
// task and node ids are used as they are in KV keys and in event subjects
// (imagefarm.events.<job_id>); the ident rules keep '.', '*', '>', spaces
// and '/' out of them.
func invalidID(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidID, err)
	}
	return nil
}

func jobKey(jobID string) (string, error) {
	if err := invalidID(ident.JobID(jobID)); err != nil {
		return "", err
	}
	return jobID, nil
}

// taskKey is "<job_id>.<task_id>", so a job's tasks are the keys
// "<job_id>.*" and GetJob reads them with one filtered watch.
func taskKey(jobID, taskID string) (string, error) {
	if _, err := jobKey(jobID); err != nil {
		return "", err
	}
	if err := invalidID(ident.TaskID(taskID)); err != nil {
		return "", err
	}
	return jobID + "." + taskID, nil
}

func nodeKey(nodeID string) (string, error) {
	if err := invalidID(ident.NodeID(nodeID)); err != nil {
		return "", err
	}
	return nodeID, nil
}

// driveKey is "<node_id>.<base32hex(drive_id)>", so a node's drives are the
// keys "<node_id>.*".
func driveKey(nodeID, driveID string) (string, error) {
	if _, err := nodeKey(nodeID); err != nil {
		return "", err
	}
	if err := invalidID(ident.DriveID(driveID)); err != nil {
		return "", err
	}
	return nodeID + "." + driveKeyEncoding.EncodeToString([]byte(driveID)), nil
}
