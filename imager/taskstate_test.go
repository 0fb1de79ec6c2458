package imager

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// legalRunMoves is every move a task run may make, written out apart from
// runMoves so that a change to the table must change this list too.
var legalRunMoves = map[[2]runState]bool{
	{runAssigned, runFetching}:     true, // its batch starts
	{runAssigned, runReporting}:    true, // canceled before its batch started
	{runAssigned, runStopped}:      true, // stopped before its batch started
	{runFetching, runWriting}:      true,
	{runFetching, runReporting}:    true, // failed or canceled while fetching
	{runFetching, runStopping}:     true,
	{runFetching, runInterrupted}:  true,
	{runWriting, runVerifying}:     true,
	{runWriting, runReporting}:     true,
	{runWriting, runStopping}:      true,
	{runWriting, runInterrupted}:   true,
	{runVerifying, runReporting}:   true,
	{runVerifying, runStopping}:    true,
	{runVerifying, runInterrupted}: true,
	{runReporting, runSettled}:     true, // the controller acknowledged the result
	{runReporting, runStopped}:     true,
	{runSettled, runStopped}:       true,
	{runStopping, runStopped}:      true, // the stopped write ended
}

// TestRunMovesAreExactlyTheLegalOnes checks every pair of states, the
// same state twice and the zero state included, against legalRunMoves.
func TestRunMovesAreExactlyTheLegalOnes(t *testing.T) {
	states := append([]runState{0}, runStates...)
	for _, from := range states {
		for _, to := range states {
			err := checkMove(from, to)
			if want := legalRunMoves[[2]runState{from, to}]; want != (err == nil) {
				t.Errorf("checkMove(%v, %v) = %v, want legal %v", from, to, err, want)
			}
			if err != nil && !errors.Is(err, errIllegalMove) {
				t.Errorf("checkMove(%v, %v) = %v, want errIllegalMove", from, to, err)
			}
		}
	}
	if n := len(runStates); n != int(runInterrupted) {
		t.Errorf("runStates lists %d states, want %d: every state is checked", n, runInterrupted)
	}
}

// TestRunStatesFinalAndSettled checks which states end a run, which hold
// a busy drive and which have their deliveries acked.
func TestRunStatesFinalAndSettled(t *testing.T) {
	for _, s := range runStates {
		_, hasMoves := runMoves[s]
		wantFinal := s == runStopped || s == runInterrupted
		if hasMoves == wantFinal {
			t.Errorf("state %v has moves %v, want final %v", s, hasMoves, wantFinal)
		}
		wantSettled := s == runSettled || s == runStopping || s == runStopped
		if s.settled() != wantSettled {
			t.Errorf("%v.settled() = %v, want %v", s, s.settled(), wantSettled)
		}
		wantRunning := s == runFetching || s == runWriting || s == runVerifying
		if s.running() != wantRunning {
			t.Errorf("%v.running() = %v, want %v", s, s.running(), wantRunning)
		}
		if wantBusy := wantRunning || s == runStopping; s.busy() != wantBusy {
			t.Errorf("%v.busy() = %v, want %v", s, s.busy(), wantBusy)
		}
		if strings.HasPrefix(s.String(), "runState(") {
			t.Errorf("state %d has no name", s)
		}
	}
}

// TestRunStateOfProgress checks that each progress state maps to its run
// state and that final task states are never taken as progress.
func TestRunStateOfProgress(t *testing.T) {
	for ts, want := range map[imagefarmv1.TaskState]runState{
		imagefarmv1.TaskState_TASK_STATE_ASSIGNED:  runAssigned,
		imagefarmv1.TaskState_TASK_STATE_FETCHING:  runFetching,
		imagefarmv1.TaskState_TASK_STATE_WRITING:   runWriting,
		imagefarmv1.TaskState_TASK_STATE_VERIFYING: runVerifying,
	} {
		if got, ok := runStateOf(ts); !ok || got != want {
			t.Errorf("runStateOf(%v) = %v, %v, want %v, true", ts, got, ok, want)
		}
	}
	for ts := range imagefarmv1.TaskState_name {
		s := imagefarmv1.TaskState(ts)
		if _, ok := runStateOf(s); ok && (s.Final() || s == imagefarmv1.TaskState_TASK_STATE_QUEUED || s == 0) {
			t.Errorf("runStateOf(%v) is a run state; a final, queued or unset task state is no progress", s)
		}
	}
}

// TestMoveLockedRefusesAndLogs checks that an illegal move leaves the run
// as it was and is logged, and that a run is settled (its deliveries
// released) exactly once, when it first enters a settled state.
func TestMoveLockedRefusesAndLogs(t *testing.T) {
	var logs bytes.Buffer
	a := &Agent{log: slog.New(slog.NewTextHandler(&logs, nil)), tasks: map[taskKey]*taskRun{}}
	released := 0
	r := &taskRun{key: taskKey{"job-1_t1", 3}, state: runAssigned, release: func() { released++ }}
	a.tasks[r.key] = r

	if a.moveLocked(r, runSettled) {
		t.Fatalf("moveLocked(assigned, settled) = true, want false")
	}
	if r.state != runAssigned || released != 0 {
		t.Errorf("after a refused move: state %v, released %d times; want assigned, 0", r.state, released)
	}
	if got := logs.String(); !strings.Contains(got, "task run not moved") || !strings.Contains(got, "ASSIGNED to settled") || !strings.Contains(got, "job-1_t1") {
		t.Errorf("log of a refused move = %q, want it to name the run and both states", got)
	}

	for _, to := range []runState{runFetching, runWriting, runStopping, runStopped} {
		if !a.moveLocked(r, to) {
			t.Fatalf("moveLocked to %v = false, want true; log: %s", to, logs.String())
		}
	}
	if released != 1 || len(a.settled) != 1 || a.settled[0] != r.key {
		t.Errorf("after settling through stopping then stopped: released %d times, settled records %v; want once, [%v]", released, a.settled, r.key)
	}
}
