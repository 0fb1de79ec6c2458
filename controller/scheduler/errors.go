package scheduler

import "errors"

// Limits on what a submit may ask for. They keep one request from making the
// controller hold or scan an absurd amount, not from imaging a big farm.
const (
	// MaxCount is the largest count of a standing order and the longest
	// explicit drive list.
	MaxCount = 100_000
	// MaxMinSize is the largest minimum drive size a selector may ask for,
	// 1 PiB. No drive comes near it: a larger minimum is a typo that would
	// keep a standing order waiting for ever.
	MaxMinSize = 1 << 50
)

// Errors of ParseDriveRef and ValidateSubmit. Each error they
// return wraps exactly one of these, with a message saying what to change;
// the API layer maps them to the gRPC code named in each comment.
var (
	// ErrBadDriveRef: a drive reference that is not NODE/DRIVE, or whose
	// node or drive id breaks its internal/ident rule. InvalidArgument.
	ErrBadDriveRef = errors.New("scheduler: bad drive reference")
	// ErrBadTargets: neither or both of drives and selector, an empty or
	// too long drive list, a drive listed twice, or a count given with
	// explicit drives. InvalidArgument.
	ErrBadTargets = errors.New("scheduler: bad targets")
	// ErrBadCount: a standing order's count below 1 or above MaxCount.
	// InvalidArgument.
	ErrBadCount = errors.New("scheduler: bad count")
	// ErrBadSelector: a selector with a pool, label or node id that breaks
	// its internal/ident rule, too many node ids, or a minimum size above
	// MaxMinSize. InvalidArgument.
	ErrBadSelector = errors.New("scheduler: bad selector")

	// ErrUnknownNode: a node id the farm has never seen. NotFound.
	ErrUnknownNode = errors.New("scheduler: unknown node")
	// ErrUnknownDrive: a drive its node does not report. NotFound.
	ErrUnknownDrive = errors.New("scheduler: unknown drive")
	// ErrUnknownPool: a pool no node belongs to. NotFound.
	ErrUnknownPool = errors.New("scheduler: unknown pool")
	// ErrNoMatchingNode: no known node has the selector's pool, labels and
	// node ids all at once. NotFound.
	ErrNoMatchingNode = errors.New("scheduler: no node matches the selector")

	// ErrNodeUnavailable: an explicit drive on a node that is lost or
	// draining. FailedPrecondition.
	ErrNodeUnavailable = errors.New("scheduler: node not taking tasks")
	// ErrDriveRefused: an explicit drive the node's guards refuse (system
	// disk, mounted, not allowed by policy). FailedPrecondition.
	ErrDriveRefused = errors.New("scheduler: drive refused by its node")
	// ErrDriveBusy: an explicit drive a task is using. FailedPrecondition.
	ErrDriveBusy = errors.New("scheduler: drive busy")
	// ErrDriveTooSmall: an explicit drive smaller than the image, or a
	// selector whose every current match is. FailedPrecondition.
	ErrDriveTooSmall = errors.New("scheduler: drive too small")
)
