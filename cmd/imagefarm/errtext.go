package main

import (
	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/errtext"
	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/media/fatdisk"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/gpt"
	"github.com/imagefarm/imagefarm/storage/wim"
)

// cliErrors are how the errors of what the CLI runs itself (the catalog,
// the store, drives, media) read on its last line; the controller's come
// already made for a person.
var cliErrors = errtext.Rules{
	Explained: []error{catalog.ErrBadRef},
	Tagged: []error{catalog.ErrChunkGone, catalog.ErrNameTaken, catalog.ErrNotFound, catalog.ErrVersionExists,
		catalog.ErrSignatureMissing, catalog.ErrSignatureInvalid, catalog.ErrBadManifest, catalog.ErrNotForDrive,
		catalog.ErrCorruptChunk, catalog.ErrStorageUnavailable, storage.ErrNotFound, storage.ErrAccessDenied,
		storage.ErrUnreachable, storage.ErrNoBucket, storage.ErrInvalidKey, storage.ErrBadURL, storage.ErrExists,
		bundle.ErrNotBundle, wim.ErrNotWIM, drive.ErrRefused, drive.ErrBusy, drive.ErrIdentityChanged, drive.ErrNotFound,
		imager.ErrRollback, imager.ErrZeroUnsupported, natsauth.ErrBadCreds, fatdisk.ErrBadFile, media.ErrModelMismatch,
		media.ErrWrongKind, media.ErrNotBootable, gpt.ErrBadSelection, gpt.ErrNotGPT, gpt.ErrCorrupt, gpt.ErrMismatch},
}
