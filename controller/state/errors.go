package state

import (
	"errors"
	"fmt"
)

// Sentinel errors. The API layer maps them to gRPC codes: ErrInvalidID to
// InvalidArgument (and a bad page token, page.ErrInvalidToken), ErrNotFound to NotFound, ErrExists
// to AlreadyExists, ErrConflict to Aborted, ErrRevisionTooOld and
// ErrFutureRevision to OutOfRange, ErrEventPending to Unavailable.
var (
	// ErrInvalidID is returned for an id that cannot name a record.
	ErrInvalidID = errors.New("state: invalid id")
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("state: not found")
	// ErrExists is returned when creating a record whose id is taken.
	ErrExists = errors.New("state: already exists")
	// ErrConflict is returned when an update lost the race for a record to
	// other writers too many times in a row.
	ErrConflict = errors.New("state: too many conflicting updates")
	// ErrIDChanged is returned when an update function changed the ids that
	// name the record it was given.
	ErrIDChanged = errors.New("state: update changed the record's id")
	// ErrEventPending is returned when a change was stored but its event
	// could not be appended yet. The change is not lost: the store appends
	// the event before the next write of the same record, or in Reconcile.
	// Until then the change must not be acknowledged to anyone.
	ErrEventPending = errors.New("state: change stored, event not yet appended")
	// ErrRevisionTooOld is matched by a *RevisionTooOldError.
	ErrRevisionTooOld = errors.New("state: revision no longer in the event stream")
	// ErrFutureRevision is returned by Watch for a revision past the next
	// event: one this stream never made.
	ErrFutureRevision = errors.New("state: revision not yet in the event stream")
	// ErrStopWatch is returned by a Watch callback to end the watch; Watch
	// then returns nil.
	ErrStopWatch = errors.New("state: stop watch")
)

// RevisionTooOldError is returned by Watch when the events from Revision on
// are no longer all kept: the stream's oldest event is First. A client
// recovers by reading the current state (GetJob) and watching from its
// revision + 1.
type RevisionTooOldError struct {
	Revision uint64 // revision asked for
	First    uint64 // oldest revision the stream keeps
}

func (e *RevisionTooOldError) Error() string {
	return fmt.Sprintf("state: revision %d is older than the oldest kept event %d; get the job and watch from its revision + 1",
		e.Revision, e.First)
}

// Is makes errors.Is(err, ErrRevisionTooOld) true.
func (e *RevisionTooOldError) Is(target error) bool { return target == ErrRevisionTooOld }
