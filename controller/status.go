package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/errtext"
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
	{codes.NotFound, []error{catalog.ErrNotFound, tokens.ErrUnknown, storage.ErrNotFound, state.ErrNotFound, errNoJob,
		scheduler.ErrUnknownNode, scheduler.ErrUnknownDrive, scheduler.ErrUnknownPool, scheduler.ErrNoMatchingNode}},
	{codes.InvalidArgument, []error{errBadRequest, tokens.ErrInvalid, tokens.ErrAmbiguous, errBadPageToken, errProtocol, catalog.ErrBadRef,
		catalog.ErrSignatureInvalid, state.ErrInvalidID, state.ErrInvalidPageToken, ident.ErrInvalid, scheduler.ErrBadDriveRef,
		scheduler.ErrBadTargets, scheduler.ErrBadCount, scheduler.ErrBadSelector}},
	{codes.FailedPrecondition, []error{scheduler.ErrNodeUnavailable, scheduler.ErrDriveRefused, scheduler.ErrDriveBusy,
		scheduler.ErrDriveTooSmall, core.ErrJobEnded, core.ErrIllegalMove, catalog.ErrNotForDrive, tokens.ErrLastAdmin, catalog.ErrNameTaken, errUntrustedKey,
		errStoreReadOnly}},
	{codes.OutOfRange, []error{state.ErrRevisionTooOld, state.ErrFutureRevision}},
	{codes.AlreadyExists, []error{state.ErrExists, tokens.ErrExists, errRequestIDReused, catalog.ErrVersionExists}},
	{codes.Unauthenticated, []error{errNoCertificate, pki.ErrUntrusted, errNoToken}},
	{codes.PermissionDenied, []error{errWrongPeer}},
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
var explained = []error{ident.ErrInvalid, scheduler.ErrBadDriveRef, scheduler.ErrBadTargets, scheduler.ErrBadCount,
	scheduler.ErrBadSelector, scheduler.ErrUnknownNode, scheduler.ErrUnknownDrive, scheduler.ErrUnknownPool,
	scheduler.ErrNoMatchingNode, scheduler.ErrNodeUnavailable, scheduler.ErrDriveRefused, scheduler.ErrDriveBusy,
	scheduler.ErrDriveTooSmall, errBadRequest, errBadPageToken, errNoJob, core.ErrJobEnded, errRequestIDReused, errStoreReadOnly,
	tokens.ErrInvalid, tokens.ErrUnknown, tokens.ErrAmbiguous, tokens.ErrLastAdmin, state.ErrInvalidID,
	state.ErrInvalidPageToken, catalog.ErrNotForDrive}

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

// paginate returns one page of items and the token of the next page.
// Paging is by keyset, as state.ListJobs pages: items are sorted by key
// (distinct and ascending), and a token is the key of the last item of the
// previous page, base64url-encoded, so a page starts after that item
// wherever it now is. An item added or removed between two pages moves
// no other item from one page to the next: none is skipped or repeated.
func paginate[T any](items []T, size int32, token string, key func(T) string, checkKey func(string) error) ([]T, string, error) {
	if err := checkPageSize(size); err != nil {
		return nil, "", err
	}
	if size == 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	start := 0
	if token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err == nil {
			err = checkKey(string(after))
		}
		if err != nil || len(after) == 0 {
			return nil, "", fmt.Errorf("page token %s: pass the next_page_token of the previous response: %w", ident.Quote(token), errBadPageToken)
		}
		start, _ = slices.BinarySearchFunc(items, string(after), func(item T, after string) int {
			if key(item) <= after {
				return -1
			}
			return 1
		})
	}
	end := min(start+int(size), len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(key(items[end-1])))
	}
	return items[start:end], next, nil
}
