package controller

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/pki"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Errors of the controller's own checks; toStatus maps them.
var (
	// errBadRequest: a request field out of its bounds. InvalidArgument.
	errBadRequest = errors.New("controller: bad request")
	// errBadPageToken: a page token this controller did not make.
	// InvalidArgument.
	errBadPageToken = errors.New("controller: bad page token")
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
)

// toStatus turns a domain error into a gRPC status, in this one place, with
// the error's own message, which says what was wrong and what to do.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, errNotRecorded):
		return codes.Internal
	case isAny(err, catalog.ErrNotFound, tokens.ErrUnknown, storage.ErrNotFound, state.ErrNotFound, scheduler.ErrUnknownNode,
		scheduler.ErrUnknownDrive, scheduler.ErrUnknownPool, scheduler.ErrNoMatchingNode):
		return codes.NotFound
	case isAny(err, errBadRequest, ident.ErrInvalid, tokens.ErrInvalid, tokens.ErrAmbiguous, errBadPageToken, errProtocol, catalog.ErrBadRef,
		catalog.ErrSignatureInvalid, state.ErrInvalidID, state.ErrInvalidPageToken, scheduler.ErrBadDriveRef,
		scheduler.ErrBadTargets, scheduler.ErrBadCount, scheduler.ErrBadSelector):
		return codes.InvalidArgument
	case isAny(err, scheduler.ErrNodeUnavailable, scheduler.ErrDriveRefused, scheduler.ErrDriveBusy, scheduler.ErrDriveTooSmall,
		errJobEnded, catalog.ErrNotForDrive, tokens.ErrLastAdmin, catalog.ErrNameTaken, errUntrustedKey, errStoreReadOnly):
		return codes.FailedPrecondition
	case isAny(err, state.ErrRevisionTooOld, state.ErrFutureRevision):
		return codes.OutOfRange
	case isAny(err, state.ErrExists, tokens.ErrExists, errRequestIDReused, catalog.ErrVersionExists):
		return codes.AlreadyExists
	case isAny(err, errNoCertificate, pki.ErrUntrusted, errNoToken):
		return codes.Unauthenticated
	case errors.Is(err, errWrongPeer):
		return codes.PermissionDenied
	case isAny(err, errFenced, state.ErrConflict):
		return codes.Aborted
	case isAny(err, catalog.ErrBadManifest, catalog.ErrCorruptChunk, audit.ErrUndecodable):
		return codes.DataLoss
	case isAny(err, storage.ErrUnreachable, storage.ErrAccessDenied, storage.ErrNoBucket, state.ErrEventPending, audit.ErrUnavailable, errTokensUnavailable):
		return codes.Unavailable
	}
	return codes.Internal
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// maxPageSize bounds a page so that one request cannot ask for everything.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// checkPageSize refuses a negative page size; 0 asks for the default and
// a size above the maximum gets the maximum.
func checkPageSize(size int32) error {
	if size < 0 {
		return fmt.Errorf("page_size %d: use 0 for the default or up to %d: %w", size, maxPageSize, errBadRequest)
	}
	return nil
}

// paginate returns one page of items and the token of the next page. The
// token is the offset of the next item.
func paginate[T any](items []T, size int32, token string) ([]T, string, error) {
	if err := checkPageSize(size); err != nil {
		return nil, "", err
	}
	if size == 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", fmt.Errorf("page token %s: pass the next_page_token of the previous response: %w", ident.Quote(token), errBadPageToken)
		}
		start = n
	}
	end := min(start+int(size), len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}
