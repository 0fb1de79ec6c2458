// Package core owns every change of a job, task, drive, node, model or
// rollout record: it is the only code that writes them (through
// controller/state, which stores each change in KV and appends its event;
// models and rollouts through controller/fleet).
//
// Each kind of record has one table of the state changes it may make, in
// a file of its own: jobMoves (job.go), taskMoves (task.go), nodeMoves
// (node.go), modelMoves and rolloutMoves (fleet.go); a drive has one per
// writer (drive.go): driveReports for its imager's reports, driveClaims
// for the controller's claim and release.
// Every write goes through one function, apply (machine.go), which lets
// the caller change the freshly read record and then checks the move from
// the state the record had to the state it would get against the table;
// a move the table refuses writes nothing and returns a *MoveError
// (errors.Is ErrIllegalMove). So "has this task ended yet?" is answered by
// the table, not by a guard at each call site: a result for a task that
// was canceled meanwhile is a refused move, and nothing is overwritten.
//
// The core returns domain errors only (its own and controller/state's);
// package controller's gRPC interceptors turn them into status codes.
package core
