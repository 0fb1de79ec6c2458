package core

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Every pair of states of each kind of record, legal or refused, against
// a list written out here by hand (not derived from the tables): a change
// to a table must change this list too. "NONE" is no record yet, so its
// moves are the states a record may be created in; 99 is a value this
// build does not know.

func TestJobMovesAreExactlyThese(t *testing.T) {
	checkMoves(t, jobMoves, `
		NONE→PENDING
		PENDING→PENDING PENDING→RUNNING PENDING→SUCCEEDED PENDING→PARTIAL PENDING→FAILED PENDING→CANCELED
		RUNNING→RUNNING RUNNING→SUCCEEDED RUNNING→PARTIAL RUNNING→FAILED RUNNING→CANCELED`)
}

func TestTaskMovesAreExactlyThese(t *testing.T) {
	checkMoves(t, taskMoves, `
		NONE→ASSIGNED NONE→FAILED
		ASSIGNED→ASSIGNED ASSIGNED→FETCHING ASSIGNED→WRITING ASSIGNED→VERIFYING
		ASSIGNED→DONE ASSIGNED→FAILED ASSIGNED→CANCELED ASSIGNED→LOST
		FETCHING→FETCHING FETCHING→WRITING FETCHING→VERIFYING
		FETCHING→DONE FETCHING→FAILED FETCHING→CANCELED FETCHING→LOST
		WRITING→WRITING WRITING→VERIFYING
		WRITING→DONE WRITING→FAILED WRITING→CANCELED WRITING→LOST
		VERIFYING→VERIFYING
		VERIFYING→DONE VERIFYING→FAILED VERIFYING→CANCELED VERIFYING→LOST`)
}

func TestNodeMovesAreExactlyThese(t *testing.T) {
	checkMoves(t, nodeMoves, `
		NONE→ONLINE
		ONLINE→ONLINE ONLINE→LOST
		LOST→LOST LOST→ONLINE`)
}

// TestDriveMovesAreExactlyThese lists both of a drive's tables: what its
// imager's reports may do, and what the controller's claim and release may
// (never claim a REFUSED drive, never make one AVAILABLE).
func TestDriveMovesAreExactlyThese(t *testing.T) {
	t.Run("reports", func(t *testing.T) {
		checkMoves(t, driveReports, `
			NONE→AVAILABLE NONE→BUSY NONE→REFUSED
			AVAILABLE→AVAILABLE AVAILABLE→BUSY AVAILABLE→REFUSED
			BUSY→BUSY BUSY→AVAILABLE BUSY→REFUSED
			REFUSED→REFUSED REFUSED→AVAILABLE REFUSED→BUSY`)
	})
	t.Run("claims", func(t *testing.T) {
		checkMoves(t, driveClaims, `
			AVAILABLE→BUSY
			BUSY→BUSY BUSY→AVAILABLE
			REFUSED→REFUSED`)
	})
}

func TestDeviceMovesAreExactlyThese(t *testing.T) {
	checkMoves(t, deviceMoves, `
		NONE→IDLE
		IDLE→IDLE IDLE→BOOTING IDLE→IMAGING
		BOOTING→BOOTING BOOTING→IDLE BOOTING→IMAGING
		IMAGING→IMAGING IMAGING→IDLE`)
}

func TestResetPolicyMovesAreExactlyThese(t *testing.T) {
	checkMoves(t, policyMoves, `
		NONE→ALLOW NONE→DENY
		ALLOW→ALLOW ALLOW→DENY
		DENY→ALLOW DENY→DENY`)
}

// checkMoves asserts m.Legal for every pair of the enum's values (and an
// unknown one), legal exactly when the pair is in want.
func checkMoves[S enum](t *testing.T, m machine[S], want string) {
	t.Helper()
	legal := map[string]bool{}
	for _, pair := range strings.Fields(want) {
		legal[pair] = true
	}
	var zero S
	values := zero.Descriptor().Values()
	states := []S{}
	for i := range values.Len() {
		states = append(states, enumOf[S](zero, values.Get(i).Number()))
	}
	states = append(states, enumOf[S](zero, 99))
	seen := 0
	for _, from := range states {
		for _, to := range states {
			pair := stateName(from) + "→" + stateName(to)
			if got := m.Legal(from, to); got != legal[pair] {
				t.Errorf("%s moves: Legal(%s) = %v, want %v", m.entity, pair, got, legal[pair])
			}
			if legal[pair] {
				seen++
			}
		}
	}
	if seen != len(legal) {
		t.Errorf("%s moves: %d of the %d listed pairs name states that exist: a typo in the list", m.entity, seen, len(legal))
	}
}

// enumOf is the value of S with number n.
func enumOf[S enum](zero S, n protoreflect.EnumNumber) S {
	return zero.Type().New(n).(S)
}

// stateName is "PENDING" for JOB_STATE_PENDING, "ALLOW" for
// RESET_PERMISSION_ALLOW, "NONE" for UNSPECIFIED.
func stateName(s protoreflect.Enum) string {
	v := s.Descriptor().Values().ByNumber(s.Number())
	if v == nil {
		return fmt.Sprint(s.Number())
	}
	name := string(v.Name())
	for _, sep := range []string{"_STATE_", "_PERMISSION_"} {
		if i := strings.Index(name, sep); i >= 0 {
			name = name[i+len(sep):]
			break
		}
	}
	if name == "UNSPECIFIED" {
		return "NONE"
	}
	return name
}

// TestMoveErrorSaysWhatWasRefused: a refused move is an ErrIllegalMove
// naming the record and both states.
func TestMoveErrorSaysWhatWasRefused(t *testing.T) {
	err := taskMoves.check("j1_t1", imagefarmv1.TaskState_TASK_STATE_DONE, imagefarmv1.TaskState_TASK_STATE_CANCELED)
	if err == nil || !strings.Contains(err.Error(), "task j1_t1 cannot go from TASK_STATE_DONE to TASK_STATE_CANCELED") {
		t.Errorf("check(DONE→CANCELED) = %v, want a refusal naming the task and both states", err)
	}
}
