package core

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// NewJobID names a new job. A submit with a request id always makes the
// same job id, so a retried submit finds the job the first one made.
func NewJobID(requestID string) string {
	if requestID == "" {
		return newID("j")
	}
	sum := sha256.Sum256([]byte(requestID))
	return "j" + hex.EncodeToString(sum[:12])
}

// newID returns a time-ordered, unique id with a prefix.
func newID(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s%x%s", prefix, time.Now().UnixMilli(), hex.EncodeToString(b))
}

// taskID names a new task of a job; the job id can be read back from it.
func taskID(jobID string) string { return jobID + "_" + newID("t") }

// explicitTaskID is the one task a job that names a drive has on it.
func explicitTaskID(jobID, nodeID, driveID string) string {
	sum := sha256.Sum256([]byte(nodeID + "/" + driveID))
	return jobID + "_d" + hex.EncodeToString(sum[:10])
}

// JobOf is the id of the job of the task with id taskID.
func JobOf(taskID string) string {
	job, _, _ := strings.Cut(taskID, "_")
	return job
}
