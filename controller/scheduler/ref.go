package scheduler

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// ParseDriveRef parses "NODE/DRIVE". Both parts must follow their
// internal/ident rules (ident.NodeID, ident.DriveID); nothing is trimmed or
// guessed. Errors wrap ErrBadDriveRef.
func ParseDriveRef(s string) (DriveRef, error) {
	node, drive, ok := strings.Cut(s, "/")
	if !ok {
		return DriveRef{}, fmt.Errorf("%w: drive %s: want NODE/DRIVE, as `imagefarm drives` lists them", ErrBadDriveRef, ident.Quote(s))
	}
	ref := DriveRef{NodeID: node, DriveID: drive}
	if err := ref.check(); err != nil {
		return DriveRef{}, fmt.Errorf("%w: %w", ErrBadDriveRef, err)
	}
	return ref, nil
}

// check says which half of r breaks its rule.
func (r DriveRef) check() error {
	return cmp.Or(ident.NodeID(r.NodeID), ident.DriveID(r.DriveID))
}
