package core

import (
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Reset permissions, short, for the table.
const (
	resetNone  = imagefarmv1.ResetPermission_RESET_PERMISSION_UNSPECIFIED
	resetAllow = imagefarmv1.ResetPermission_RESET_PERMISSION_ALLOW
	resetDeny  = imagefarmv1.ResetPermission_RESET_PERMISSION_DENY
)

// policyMoves is the table of a reset policy record's legal changes: a
// record is created ALLOW or DENY and moves between them; it never goes
// back to "no record" (an admin who wants a wider scope to decide sets the
// same permission the wider scope has).
//
//	(none) → ALLOW, DENY
//	ALLOW, DENY → ALLOW, DENY
var policyMoves = machine[imagefarmv1.ResetPermission]{entity: "reset policy", moves: map[imagefarmv1.ResetPermission][]imagefarmv1.ResetPermission{
	resetNone:  {resetAllow, resetDeny},
	resetAllow: {resetAllow, resetDeny},
	resetDeny:  {resetAllow, resetDeny},
}}

// ApplyResetPolicy is apply for a reset policy record: write is the policy
// store's write (devices.Policies.Update), change the change; a move the
// table refuses stores nothing and is a *MoveError.
func ApplyResetPolicy(key string, write func(func(*imagefarmv1.ResetPolicy) error) (*imagefarmv1.ResetPolicy, error),
	change func(*imagefarmv1.ResetPolicy) error) (*imagefarmv1.ResetPolicy, error) {
	return apply(policyMoves, key, write, change)
}
