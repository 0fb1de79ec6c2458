// Package refclient changes the image catalog's refs and signatures
// through the controller's API, as the controller requires: the caller
// uploads chunks and manifests to the store itself, and then asks the
// controller, which checks its role, writes the ref or signature and
// records the change in the audit trail.
package refclient

import (
	"context"
	"slices"
	"strings"
	"sync"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Writer is a catalog.RefWriter that makes its changes through the
// controller's API. It keeps the audit records of the changes it made.
type Writer struct {
	api     imagefarmv1.ImageFarmServiceClient
	mu      sync.Mutex
	records []*imagefarmv1.AuditRecord
}

// New returns a Writer that calls api.
func New(api imagefarmv1.ImageFarmServiceClient) *Writer { return &Writer{api: api} }

// AddSignature implements catalog.RefWriter: SignImage.
func (w *Writer) AddSignature(ctx context.Context, digest string, key catalog.PublicKey, sig []byte) error {
	resp, err := w.api.SignImage(ctx, &imagefarmv1.SignImageRequest{ImageDigest: digest, PublicKey: key.Key, Signature: sig})
	return w.keep(err, resp.GetRecord())
}

// CreateVersion implements catalog.RefWriter: CreateImageVersion.
func (w *Writer) CreateVersion(ctx context.Context, name, version, digest string) error {
	resp, err := w.api.CreateImageVersion(ctx, &imagefarmv1.CreateImageVersionRequest{ImageRef: name + ":" + version, ImageDigest: digest})
	return w.keep(err, resp.GetRecord())
}

// Precheck asks the controller whether the caller may create
// name:version and whether it is free, writing nothing: image push asks
// before it uploads a chunk.
func (w *Writer) Precheck(ctx context.Context, name, version string) error {
	_, err := w.api.CreateImageVersion(ctx, &imagefarmv1.CreateImageVersionRequest{ImageRef: name + ":" + version, ValidateOnly: true})
	return err
}

// SetChannel implements catalog.RefWriter: SetImageChannel.
func (w *Writer) SetChannel(ctx context.Context, name, channel, digest string) error {
	_, err := w.Tag(ctx, catalog.Ref{Name: name, Digest: digest}, channel)
	return err
}

// Tag points channel of target's name at what target names, and returns
// its digest.
func (w *Writer) Tag(ctx context.Context, target catalog.Ref, channel string) (string, error) {
	resp, err := w.api.SetImageChannel(ctx, &imagefarmv1.SetImageChannelRequest{ImageRef: target.String(), Channel: channel})
	return resp.GetRecord().GetImageDigest(), w.keep(err, resp.GetRecord())
}

// Remove removes ref (with a digest, every ref of the name pointing at
// it), as catalog.Catalog.Remove does, and returns the refs removed.
func (w *Writer) Remove(ctx context.Context, ref catalog.Ref) ([]catalog.RefTarget, error) {
	resp, err := w.api.RemoveImageRef(ctx, &imagefarmv1.RemoveImageRefRequest{ImageRef: ref.String()})
	if err != nil {
		return nil, err
	}
	var removed []catalog.RefTarget
	for _, rec := range resp.GetRecords() {
		tag := strings.TrimPrefix(rec.GetImageRef(), ref.Name+":")
		removed = append(removed, catalog.RefTarget{Ref: catalog.Ref{Name: ref.Name, Tag: tag}, Digest: rec.GetImageDigest()})
		w.keep(nil, rec)
	}
	return removed, nil
}

// Records returns the audit records of the changes made so far.
func (w *Writer) Records() []*imagefarmv1.AuditRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.records)
}

func (w *Writer) keep(err error, rec *imagefarmv1.AuditRecord) error {
	if err == nil {
		w.mu.Lock()
		w.records = append(w.records, rec)
		w.mu.Unlock()
	}
	return err
}
