package core

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrIllegalMove is matched by every *MoveError.
var ErrIllegalMove = errors.New("core: illegal state change")

// MoveError is a change of a record's state that its table refuses.
// Nothing was written.
type MoveError struct {
	Entity string            // "job", "task" or "drive"
	ID     string            // the record's id
	From   protoreflect.Enum // the state the record has
	To     protoreflect.Enum // the state the change would have given it
}

func (e *MoveError) Error() string {
	return fmt.Sprintf("core: %s %s cannot go from %v to %v", e.Entity, e.ID, e.From, e.To)
}

// Is makes errors.Is(err, ErrIllegalMove) true.
func (e *MoveError) Is(target error) bool { return target == ErrIllegalMove }

// enum is a record's state: one of the proto's state enums.
type enum interface {
	comparable
	protoreflect.Enum
}

// machine is the table of one kind of record's legal state changes: from
// each state, the states it may become. The zero state (UNSPECIFIED) is
// "no record yet": its moves are the states a record may be created in. A
// state with no row changes no more; a state that may be written again
// without changing (other fields move) lists itself.
type machine[S enum] struct {
	entity string
	moves  map[S][]S
}

// Legal reports whether a record in state from may be written in state to.
func (m machine[S]) Legal(from, to S) bool { return slices.Contains(m.moves[from], to) }

func (m machine[S]) check(id string, from, to S) error {
	if m.Legal(from, to) {
		return nil
	}
	return &MoveError{Entity: m.entity, ID: id, From: from, To: to}
}

// record is what apply needs of a stored record: its id and its state.
type record[S enum] interface {
	proto.Message
	GetState() S
}

// apply is the one way a job, task or drive record is written. write is
// one of the store's writes (Create*, Update*), which reads the record,
// runs the function it is given on it, stores the result in KV and appends
// its event, retrying from a fresh read when another writer got there
// first. apply gives it a function that lets change alter the record and
// then checks the move from the state the record had to the state change
// gave it against m; a refused move stores nothing and is returned as a
// *MoveError. Because the check runs on every (re)read inside the store's
// write, a racing change is checked as well: a task that another writer
// ended meanwhile cannot be overwritten.
func apply[R record[S], S enum](m machine[S], id string, write func(func(R) error) (R, error), change func(R) error) (R, error) {
	return write(func(r R) error {
		from := r.GetState()
		if err := change(r); err != nil {
			return err
		}
		return m.check(id, from, r.GetState())
	})
}
