package imager

import (
	"errors"
	"fmt"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// runState is where one run of a task is on this node: the one record of
// its life, moved only by Agent.moveLocked along runMoves. The first four
// are the task's own states as the controller knows them (TaskState);
// the others say how far its end has gone, which only the node knows: a
// result waiting for the controller's acknowledgement, a run stopped by
// the controller, one cut by the imager's shutdown.
//
// A TaskCancel is not a state of its own: it ends an unstarted run at
// once (CANCELED, reported) and a started one's write, which then ends
// with a CANCELED result like any other.
type runState uint8

const (
	// runAssigned: delivered, waiting for its batch's write to start;
	// the drive has not been touched.
	runAssigned runState = iota + 1
	// runFetching, runWriting and runVerifying: its batch's write runs,
	// in the phase reported to the controller.
	runFetching
	runWriting
	runVerifying
	// runReporting: its result (DONE, FAILED or CANCELED) is queued for
	// the controller, which has not acknowledged it yet.
	runReporting
	// runSettled: the controller recorded its result; its deliveries are
	// acked, and one delivered again gets the result once more.
	runSettled
	// runStopping: the controller stopped it (StopTask, or a new epoch
	// fenced it) while its write runs: nothing more is reported, its
	// deliveries are acked, and its drive stays busy until the write ends.
	runStopping
	// runStopped: stopped, and its write is over or never began. Nothing
	// about it is reported again.
	runStopped
	// runInterrupted: the imager's shutdown cut its write. Its CANCELED
	// result is not reported (that would cancel the job): the controller
	// ends it LOST, and its deliveries stay unacked.
	runInterrupted
)

// runStates lists every state, for the exhaustive test.
var runStates = []runState{runAssigned, runFetching, runWriting, runVerifying,
	runReporting, runSettled, runStopping, runStopped, runInterrupted}

// runMoves is the table of legal moves: from a state, the states a run
// may go to next. A state absent as a key is final.
//
//	assigned → fetching → writing → verifying   its batch's write, forward
//	assigned → reporting                        canceled before its batch began
//	assigned → stopped                          stopped before its batch began
//	fetching, writing, verifying → reporting    the write's result
//	fetching, writing, verifying → stopping     StopTask or fenced mid-write
//	fetching, writing, verifying → interrupted  the imager's shutdown
//	reporting → settled                         the controller acknowledged it
//	reporting, settled, stopping → stopped
//
// Unlike the controller's table, no phase is skipped: the write reports
// every phase, and the agent sees each report.
var runMoves = map[runState][]runState{
	// The batch starts; a cancel ends it untouched; a stop ends it silently.
	runAssigned:  {runFetching, runReporting, runStopped},
	runFetching:  {runWriting, runReporting, runStopping, runInterrupted},
	runWriting:   {runVerifying, runReporting, runStopping, runInterrupted},
	runVerifying: {runReporting, runStopping, runInterrupted},
	// The controller acknowledges the result, or stops the task first.
	runReporting: {runSettled, runStopped},
	// A StopTask for a settled run: a delivery that comes again is then
	// acked without sending the result once more.
	runSettled:  {runStopped},
	runStopping: {runStopped},
}

// runTaskStates are the task states the running states report.
var runTaskStates = map[runState]imagefarmv1.TaskState{
	runAssigned:  imagefarmv1.TaskState_TASK_STATE_ASSIGNED,
	runFetching:  imagefarmv1.TaskState_TASK_STATE_FETCHING,
	runWriting:   imagefarmv1.TaskState_TASK_STATE_WRITING,
	runVerifying: imagefarmv1.TaskState_TASK_STATE_VERIFYING,
}

// errIllegalMove is returned for a move runMoves does not list.
var errIllegalMove = errors.New("imager: illegal task run move")

// String names the state in logs.
func (s runState) String() string {
	switch s {
	case runReporting:
		return "reporting"
	case runSettled:
		return "settled"
	case runStopping:
		return "stopping"
	case runStopped:
		return "stopped"
	case runInterrupted:
		return "interrupted"
	}
	if t, ok := runTaskStates[s]; ok {
		return t.String()
	}
	return fmt.Sprintf("runState(%d)", s)
}

// running reports whether the run's write goes on and reports progress.
func (s runState) running() bool {
	return s == runFetching || s == runWriting || s == runVerifying
}

// busy reports whether the run's write goes on: its drive is busy. A
// stopped run's write may still be ending.
func (s runState) busy() bool { return s.running() || s == runStopping }

// settled reports whether the run is over for the controller, so its
// deliveries are acked: it is no longer held.
func (s runState) settled() bool {
	return s == runSettled || s == runStopping || s == runStopped
}

// checkMove returns nil if a run may go from one state to another, else
// errIllegalMove naming both.
func checkMove(from, to runState) error {
	for _, s := range runMoves[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("%w: %v to %v", errIllegalMove, from, to)
}

// runStateOf is the running state that reports task state t; ok is false
// for a task state no run reports as progress.
func runStateOf(t imagefarmv1.TaskState) (s runState, ok bool) {
	for s, ts := range runTaskStates {
		if ts == t {
			return s, true
		}
	}
	return 0, false
}

// moveLocked moves r to state to, if runMoves allows it, and does what
// entering to entails: a run that settles has its deliveries acked. An
// illegal move changes nothing and is logged as the bug it is; moveLocked
// then returns false. Called with a.mu held.
func (a *Agent) moveLocked(r *taskRun, to runState) bool {
	from := r.state
	if err := checkMove(from, to); err != nil {
		a.log.Error("task run not moved", "task_id", r.key.id, "epoch", r.key.epoch, "error", err)
		return false
	}
	r.state = to
	if to.settled() && !from.settled() {
		a.settleLocked(r)
	}
	return true
}

// taskState is the task state r reports: its result's once it has one.
func (r *taskRun) taskState() imagefarmv1.TaskState {
	if r.result != nil {
		return r.result.GetState()
	}
	return runTaskStates[r.state]
}
