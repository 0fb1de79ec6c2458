package controller

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// errBadPageToken is returned for a page token this controller did not make.
var errBadPageToken = errors.New("controller: bad page token")

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
	case isAny(err, catalog.ErrNotFound, storage.ErrNotFound, scheduler.ErrUnknownNode, scheduler.ErrUnknownDrive,
		scheduler.ErrUnknownPool, scheduler.ErrNoMatchingNode):
		return codes.NotFound
	case isAny(err, catalog.ErrBadRef, errBadPageToken, scheduler.ErrBadID, scheduler.ErrBadDriveRef,
		scheduler.ErrBadTargets, scheduler.ErrBadCount, scheduler.ErrBadSelector):
		return codes.InvalidArgument
	case isAny(err, scheduler.ErrNodeUnavailable, scheduler.ErrDriveRefused, scheduler.ErrDriveBusy, scheduler.ErrDriveTooSmall):
		return codes.FailedPrecondition
	case errors.Is(err, catalog.ErrBadManifest), errors.Is(err, catalog.ErrCorruptChunk):
		return codes.DataLoss
	case errors.Is(err, storage.ErrUnreachable), errors.Is(err, storage.ErrAccessDenied), errors.Is(err, storage.ErrNoBucket):
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

// paginate returns one page of items and the token of the next page. The
// token is the offset of the next item.
func paginate[T any](items []T, size int32, token string) ([]T, string, error) {
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", fmt.Errorf("%w %q: pass the next_page_token of the previous response", errBadPageToken, token)
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
