package controller

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/enroll"
	"github.com/imagefarm/imagefarm/controller/fleet"
	"github.com/imagefarm/imagefarm/controller/page"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/errtext"
	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/pki"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/gpt"
)

// Errors of the controller's own checks; toStatus maps them.
var (
	// errBadRequest: a request field out of its bounds. InvalidArgument.
	errBadRequest = errors.New("controller: bad request")
	// errProtocol: an imager stream that breaks the protocol of
	// ImagerService.Connect (no Hello first, a second Hello). InvalidArgument.
	errProtocol = errors.New("controller: imager protocol violation")
	// errFenced: the node of an imager stream was declared lost while
	// connected. Aborted.
	errFenced = errors.New("controller: node fenced")
	// errUntrustedKey: a signature by a key the controller does not trust.
	// FailedPrecondition.
	errUntrustedKey = errors.New("controller: signing key not trusted")
	// errNotRecorded: a catalog change was made, but its audit record
	// could not be appended. Internal, not Unavailable: a retry would not
	// find the change to make.
	errNotRecorded = errors.New("controller: change not recorded")
	// errStoreReadOnly: the store refused the controller a write to refs/
	// or signatures/. FailedPrecondition.
	errStoreReadOnly = errors.New("controller: store credentials read-only")
	// errNoJob: a job id the farm has no job with. NotFound.
	errNoJob = errors.New("controller: no such job")
)

// statusUnary and statusStream turn the error a call ends with into a gRPC
// status with toStatus: the adapters (apiServer, imagerServer) and the
// interceptors inside these return domain errors, and this is the one
// place they become codes.
func statusUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, toStatus(err)
}

func statusStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return toStatus(handler(srv, ss))
}

// toStatus turns a domain error into a gRPC status, with the error's own
// message, which says what was wrong and what to do, made for a person by
// message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), message(err))
}

// statusCodes maps the domain sentinels to gRPC codes; an error gets the
// code of the first row with a sentinel it wraps, Internal if none.
var statusCodes = []struct {
	code codes.Code
	errs []error
}{
	{codes.Internal, []error{errNotRecorded}},
	{codes.NotFound, []error{errNoResetState, devices.ErrNotFound, fleet.ErrNotFound, catalog.ErrNotFound, tokens.ErrUnknown, storage.ErrNotFound, state.ErrNotFound, errNoJob,
		scheduler.ErrUnknownNode, scheduler.ErrUnknownDrive, scheduler.ErrUnknownPool, scheduler.ErrNoMatchingNode}},
	{codes.InvalidArgument, []error{devices.ErrInvalid, errBadRequest, tokens.ErrInvalid, tokens.ErrAmbiguous, page.ErrInvalidToken, page.ErrInvalidSize,
		errProtocol, catalog.ErrBadRef, catalog.ErrChunkMismatch, catalog.ErrSignatureInvalid, state.ErrInvalidID, ident.ErrInvalid, scheduler.ErrBadDriveRef,
		scheduler.ErrBadTargets, scheduler.ErrBadCount, scheduler.ErrBadSelector, gpt.ErrBadSelection, gpt.ErrNotGPT, gpt.ErrCorrupt}},
	{codes.FailedPrecondition, []error{errDeviceRefused, scheduler.ErrNodeUnavailable, scheduler.ErrDriveRefused, scheduler.ErrDriveBusy,
		scheduler.ErrDriveTooSmall, core.ErrJobEnded, core.ErrIllegalMove, catalog.ErrNotForDrive, tokens.ErrLastAdmin, catalog.ErrNameTaken, errUntrustedKey,
		errStoreReadOnly, errRolloutState}},
	{codes.OutOfRange, []error{state.ErrRevisionTooOld, state.ErrFutureRevision}},
	{codes.AlreadyExists, []error{state.ErrExists, tokens.ErrExists, errRequestIDReused, catalog.ErrVersionExists, errNameTaken}},
	{codes.Unauthenticated, []error{errNoDeviceCredential, errNoCertificate, pki.ErrUntrusted, errNoToken}},
	{codes.PermissionDenied, []error{enroll.ErrRefused, errNotForDevice, errWrongPeer, errConsoleRefused}},
	{codes.Aborted, []error{errFenced, state.ErrConflict}},
	{codes.DataLoss, []error{catalog.ErrBadManifest, catalog.ErrCorruptChunk, audit.ErrUndecodable}},
	{codes.Unavailable, []error{storage.ErrUnreachable, storage.ErrAccessDenied, storage.ErrNoBucket, state.ErrEventPending,
		audit.ErrUnavailable, errTokensUnavailable}},
}

func codeOf(err error) codes.Code {
	for _, row := range statusCodes {
		if isAny(err, row.errs...) {
			return row.code
		}
	}
	return codes.Internal
}

// explained are the sentinels whose every wrapping message says what was
// wrong and what to do (the scheduler's promise them): their own text, at
// the end, would only add an internal tag ("...: scheduler: bad count").
var explained = []error{devices.ErrInvalid, errDeviceRefused, errConsoleRefused, errNoDeviceCredential, enroll.ErrRefused, errNotForDevice, ident.ErrInvalid, scheduler.ErrBadDriveRef, scheduler.ErrBadTargets, scheduler.ErrBadCount,
	scheduler.ErrBadSelector, scheduler.ErrUnknownNode, scheduler.ErrUnknownDrive, scheduler.ErrUnknownPool,
	scheduler.ErrNoMatchingNode, scheduler.ErrNodeUnavailable, scheduler.ErrDriveRefused, scheduler.ErrDriveBusy,
	scheduler.ErrDriveTooSmall, errBadRequest, page.ErrInvalidToken, page.ErrInvalidSize, errNoJob, core.ErrJobEnded,
	errRequestIDReused, errStoreReadOnly, tokens.ErrInvalid, tokens.ErrUnknown, tokens.ErrAmbiguous, tokens.ErrLastAdmin,
	state.ErrInvalidID, catalog.ErrNotForDrive, errRolloutState, errNameTaken}

// message is err's text for a person: an explained sentinel's text goes,
// any other's package tag ("catalog: image not found: x:1" reads "image not
// found: x:1").
func message(err error) string {
	var tagged []error
	for _, row := range statusCodes {
		tagged = append(tagged, row.errs...)
	}
	return errtext.Rules{Explained: explained, Tagged: tagged}.Message(err)
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
