package core

import (
	"context"
	"errors"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Model and rollout states, short, for the tables.
const (
	modelNone   = imagefarmv1.ModelState_MODEL_STATE_UNSPECIFIED
	modelActive = imagefarmv1.ModelState_MODEL_STATE_ACTIVE

	rolloutNone       = imagefarmv1.RolloutState_ROLLOUT_STATE_UNSPECIFIED
	rolloutFirst      = imagefarmv1.RolloutState_ROLLOUT_STATE_FIRST_ARTICLE
	rolloutAwaiting   = imagefarmv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL
	rolloutRolling    = imagefarmv1.RolloutState_ROLLOUT_STATE_ROLLING
	rolloutPaused     = imagefarmv1.RolloutState_ROLLOUT_STATE_PAUSED
	rolloutBlocked    = imagefarmv1.RolloutState_ROLLOUT_STATE_BLOCKED
	rolloutDone       = imagefarmv1.RolloutState_ROLLOUT_STATE_DONE
	rolloutAborted    = imagefarmv1.RolloutState_ROLLOUT_STATE_ABORTED
	rolloutSuperseded = imagefarmv1.RolloutState_ROLLOUT_STATE_SUPERSEDED
)

// modelMoves is the table of a model record's changes: added, then
// changed in place.
var modelMoves = machine[imagefarmv1.ModelState]{entity: "model", moves: map[imagefarmv1.ModelState][]imagefarmv1.ModelState{
	modelNone:   {modelActive},
	modelActive: {modelActive},
}}

// rolloutMoves is the table of a rollout's legal state changes.
//
//	(none)            → FIRST_ARTICLE       rollout start
//	FIRST_ARTICLE     → AWAITING_APPROVAL   its sample was verified and booted back
//	FIRST_ARTICLE     → ROLLING             ... and the policy approves by itself
//	FIRST_ARTICLE     → BLOCKED             a sample device failed
//	AWAITING_APPROVAL → ROLLING             rollout approve
//	FIRST_ARTICLE, ROLLING → PAUSED         rollout pause, or a wave's failures
//	PAUSED            → FIRST_ARTICLE, ROLLING   rollout resume (where it was)
//	ROLLING           → DONE                every known device of the model has a result
//	any open state    → ABORTED             rollout abort
//	any open state    → SUPERSEDED          the model's channel moved
//
// Open states are written again in the same state as devices report.
var rolloutMoves = machine[imagefarmv1.RolloutState]{entity: "rollout", moves: map[imagefarmv1.RolloutState][]imagefarmv1.RolloutState{
	rolloutNone:     {rolloutFirst},
	rolloutFirst:    {rolloutFirst, rolloutAwaiting, rolloutRolling, rolloutBlocked, rolloutPaused, rolloutAborted, rolloutSuperseded},
	rolloutAwaiting: {rolloutAwaiting, rolloutRolling, rolloutAborted, rolloutSuperseded},
	rolloutRolling:  {rolloutRolling, rolloutPaused, rolloutDone, rolloutAborted, rolloutSuperseded},
	rolloutPaused:   {rolloutPaused, rolloutFirst, rolloutRolling, rolloutAborted, rolloutSuperseded},
	rolloutBlocked:  {rolloutBlocked, rolloutAborted, rolloutSuperseded},
}}

// RolloutMovesLegal reports whether a rollout may go from one state to
// another (for the API's refusals, which name the state).
func RolloutMovesLegal(from, to imagefarmv1.RolloutState) bool { return rolloutMoves.Legal(from, to) }

// errNoFleet: a core made without a fleet store was asked for a model or
// rollout change.
var errNoFleet = errors.New("core: no fleet store configured")

// UpdateModel changes the model named name (or adds it, when change makes
// a blank record ACTIVE) through modelMoves.
func (c *Core) UpdateModel(ctx context.Context, name string, change func(*imagefarmv1.Model) error) (*imagefarmv1.Model, error) {
	if c.fleet == nil {
		return nil, errNoFleet
	}
	return apply(modelMoves, name, func(fn func(*imagefarmv1.Model) error) (*imagefarmv1.Model, error) {
		return c.fleet.WriteModel(ctx, name, fn)
	}, change)
}

// UpdateRollout changes the rollout with id (or creates it, when change
// makes a blank record FIRST_ARTICLE) through rolloutMoves.
func (c *Core) UpdateRollout(ctx context.Context, id string, change func(*imagefarmv1.Rollout) error) (*imagefarmv1.Rollout, error) {
	if c.fleet == nil {
		return nil, errNoFleet
	}
	return apply(rolloutMoves, id, func(fn func(*imagefarmv1.Rollout) error) (*imagefarmv1.Rollout, error) {
		return c.fleet.WriteRollout(ctx, id, fn)
	}, change)
}

// NewRolloutID names a new rollout.
func NewRolloutID() string { return newID("r") }
