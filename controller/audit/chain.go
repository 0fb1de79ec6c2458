package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// BrokenError names the first record at which a chain breaks, and why.
type BrokenError struct {
	Sequence uint64 // the record's sequence
	Reason   string
}

func (e *BrokenError) Error() string { return fmt.Sprintf("record %d: %s", e.Sequence, e.Reason) }

// Hash returns the hex SHA-256 of rec's canonical bytes: its protobuf
// encoding with hash unset, fields in number order (see AuditRecord).
func Hash(rec *imagefarmv1.AuditRecord) (string, error) {
	r := proto.CloneOf(rec)
	r.Hash = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode audit record %d: %w", rec.GetSequence(), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Chain checks records handed to it in order. The zero value is ready for
// the first record of a trail.
type Chain struct {
	count    int
	first    uint64
	lastSeq  uint64
	lastHash string
}

// Add checks rec against its own hash and against the record before it,
// and returns a *BrokenError if the chain breaks there. The first record
// may start after 1 only where a stream's max age expired the ones
// before; its prev_hash is then taken on trust.
func (c *Chain) Add(rec *imagefarmv1.AuditRecord) error {
	seq := rec.GetSequence()
	hash, err := Hash(rec)
	switch {
	case err != nil:
		return &BrokenError{Sequence: seq, Reason: fmt.Sprintf("cannot be encoded (%v): the record was edited", err)}
	case rec.GetHash() != hash:
		return &BrokenError{Sequence: seq, Reason: "its hash does not match its content: the record was edited"}
	case c.count == 0 && seq == 1 && rec.GetPrevHash() != "":
		return &BrokenError{Sequence: seq, Reason: "the first record has a prev_hash: the log was edited"}
	case c.count == 0 && seq == 0:
		return &BrokenError{Sequence: seq, Reason: "no sequence: the log was edited"}
	case c.count > 0 && seq <= c.lastSeq:
		return &BrokenError{Sequence: seq, Reason: fmt.Sprintf("follows record %d: the log was edited", c.lastSeq)}
	case c.count > 0 && seq > c.lastSeq+1:
		return &BrokenError{Sequence: seq, Reason: fmt.Sprintf("follows record %d: %s missing: the log was edited", c.lastSeq, missing(c.lastSeq+1, seq-1))}
	case c.count > 0 && rec.GetPrevHash() != c.lastHash:
		return &BrokenError{Sequence: seq, Reason: fmt.Sprintf("prev_hash does not match record %d: the log was edited", c.lastSeq)}
	}
	if c.count == 0 {
		c.first = seq
	}
	c.count++
	c.lastSeq, c.lastHash = seq, hash
	return nil
}

func missing(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("record %d is", from)
	}
	return fmt.Sprintf("records %d to %d are", from, to)
}

// Count is how many records have been checked and chained.
func (c *Chain) Count() int { return c.count }

// First is the sequence of the first record checked; 0 before any.
func (c *Chain) First() uint64 { return c.first }

// Last is the sequence and hash of the last record checked.
func (c *Chain) Last() (uint64, string) { return c.lastSeq, c.lastHash }
