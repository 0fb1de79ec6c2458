package controller

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// The catalog's refs and signatures are changed only here, by admins (the
// policy table), so that every change is in the audit trail: admins' S3
// keys write chunks and manifests, not refs or signatures.
//
// Each change is made in the store first and recorded after it. A change
// whose record cannot be appended stands, and the call fails saying so:
// for a ref, the catalog watcher, which is not told of the change,
// records it as image.unrecorded within two scans; a signature, which
// the watcher does not see, is taken back (see SignImage).

// CreateImageVersion implements ImageFarmService.CreateImageVersion.
func (a *apiServer) CreateImageVersion(ctx context.Context, req *imagefarmv1.CreateImageVersionRequest) (*imagefarmv1.CreateImageVersionResponse, error) {
	ref, err := parseTagRef(req.GetImageRef())
	if err != nil {
		return nil, err
	}
	if req.GetValidateOnly() {
		if err := a.cat.CheckNewVersion(ctx, ref.Name, ref.Tag, nil); err != nil {
			return nil, err
		}
		return &imagefarmv1.CreateImageVersionResponse{}, nil
	}
	digest, err := parseDigest(req.GetImageDigest())
	if err != nil {
		return nil, err
	}
	m, err := a.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return nil, err
	}
	if err := a.cat.CreateVersion(ctx, ref.Name, ref.Tag, digest); err != nil {
		return nil, storeWriteErr(err)
	}
	rec, err := a.recordChange(ctx, ref, &imagefarmv1.AuditRecord{Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH,
		ImageRef: ref.String(), ImageDigest: digest, SizeBytes: uint64(m.Size)})
	if err != nil {
		return nil, err
	}
	return &imagefarmv1.CreateImageVersionResponse{Record: rec}, nil
}

// SetImageChannel implements ImageFarmService.SetImageChannel.
func (a *apiServer) SetImageChannel(ctx context.Context, req *imagefarmv1.SetImageChannelRequest) (*imagefarmv1.SetImageChannelResponse, error) {
	target, err := parseRef(req.GetImageRef())
	if err != nil {
		return nil, err
	}
	if err := ident.Channel(req.GetChannel()); err != nil {
		return nil, err
	}
	channel := catalog.Ref{Name: target.Name, Tag: req.GetChannel()}
	digest, err := a.cat.Resolve(ctx, target)
	if err != nil {
		return nil, err
	}
	if err := a.cat.SetChannel(ctx, channel.Name, channel.Tag, digest); err != nil {
		return nil, storeWriteErr(err)
	}
	rec, err := a.recordChange(ctx, channel, &imagefarmv1.AuditRecord{Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_TAG,
		ImageRef: channel.String(), ImageDigest: digest})
	if err != nil {
		return nil, err
	}
	a.fleet.channelMoved()
	return &imagefarmv1.SetImageChannelResponse{Record: rec}, nil
}

// RemoveImageRef implements ImageFarmService.RemoveImageRef. The refs
// removed before a failure are recorded too.
func (a *apiServer) RemoveImageRef(ctx context.Context, req *imagefarmv1.RemoveImageRefRequest) (*imagefarmv1.RemoveImageRefResponse, error) {
	ref, err := parseRef(req.GetImageRef())
	if err != nil {
		return nil, err
	}
	removed, err := a.cat.Remove(ctx, ref)
	err = storeWriteErr(err)
	resp := &imagefarmv1.RemoveImageRefResponse{}
	for _, r := range removed {
		rec, rerr := a.recordChange(ctx, r.Ref, &imagefarmv1.AuditRecord{Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_RM,
			ImageRef: r.Ref.String(), ImageDigest: r.Digest})
		if rerr != nil {
			err = errors.Join(err, rerr)
			continue
		}
		resp.Records = append(resp.Records, rec)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// SignImage implements ImageFarmService.SignImage. A signature whose
// record cannot be appended is deleted again, unless the key had signed
// the image before (its signature is then the same bytes: ed25519 is
// deterministic), so that no signature is added unrecorded.
func (a *apiServer) SignImage(ctx context.Context, req *imagefarmv1.SignImageRequest) (*imagefarmv1.SignImageResponse, error) {
	digest, err := parseDigest(req.GetImageDigest())
	if err != nil {
		return nil, err
	}
	key, err := a.signingKey(req)
	if err != nil {
		return nil, err
	}
	m, err := a.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return nil, err
	}
	before, err := a.cat.Signatures(ctx, digest)
	if err != nil {
		return nil, err
	}
	if err := a.cat.AddSignature(ctx, digest, key, req.GetSignature()); err != nil {
		return nil, storeWriteErr(err)
	}
	ref := catalog.Ref{Name: m.Name, Tag: m.Version}
	rec, err := a.recordChange(ctx, ref, &imagefarmv1.AuditRecord{Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_SIGN,
		ImageRef: ref.String(), ImageDigest: digest, Message: "key " + key.ID})
	if err != nil {
		return nil, a.takeBack(ctx, digest, key.ID, slices.Contains(before, key.ID), err)
	}
	return &imagefarmv1.SignImageResponse{Record: rec}, nil
}

// takeBack deletes the signature of digest by key id, added but not
// recorded (err says why), unless the key had signed before.
func (a *apiServer) takeBack(ctx context.Context, digest, id string, signedBefore bool, err error) error {
	if signedBefore {
		return fmt.Errorf("the key %s had signed %s already, and its audit record of this signature could not be appended: %w", id, digest, err)
	}
	if derr := a.cat.DeleteSignature(context.WithoutCancel(ctx), digest, id); derr != nil {
		a.log.Error("unrecorded signature not taken back", "image_digest", digest, "key", id, "error", derr)
		return fmt.Errorf("the signature by key %s is stored and could not be taken back (%v), and its audit record could not be appended: %w", id, derr, err)
	}
	return fmt.Errorf("signature not stored: its audit record could not be appended, so it was taken back; sign again once the audit trail is back: %w", err)
}

// signingKey checks the key and signature of req as data, and against the
// controller's trusted keys when it has them.
func (a *apiServer) signingKey(req *imagefarmv1.SignImageRequest) (catalog.PublicKey, error) {
	pub, sig := req.GetPublicKey(), req.GetSignature()
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return catalog.PublicKey{}, fmt.Errorf("public key of %d bytes and signature of %d: want an ed25519 key (%d) and signature (%d), as imagefarm image sign sends: %w",
			len(pub), len(sig), ed25519.PublicKeySize, ed25519.SignatureSize, errBadRequest)
	}
	key := catalog.PublicKey{Key: pub, ID: catalog.KeyID(pub)}
	if ring := a.trusted; ring != nil && !ring.Has(key.ID) {
		return key, fmt.Errorf("key %s is not one of the controller's trusted keys (%s), so imagers would refuse what it signs: sign with a trusted key, or add its public key to --trusted-keys here and on every imager: %w",
			key.ID, strings.Join(ring.IDs(), ", "), errUntrustedKey)
	}
	return key, nil
}

// recordChange appends rec, the record of a change made to ref, and tells
// the catalog watcher about it. A record that cannot be appended is logged
// in full and returned as an error saying the change stands.
func (a *apiServer) recordChange(ctx context.Context, ref catalog.Ref, rec *imagefarmv1.AuditRecord) (*imagefarmv1.AuditRecord, error) {
	rec.Actor = actor(ctx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	stored, err := a.audit.trail.Append(ctx, rec)
	if err != nil {
		a.log.Error("image change made but not recorded", "record", rec.String(), "error", err)
		if rec.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_SIGN {
			return nil, err // SignImage takes it back
		}
		return nil, fmt.Errorf("%s is changed in the catalog, but its audit record could not be appended (%w); the catalog watcher records the change as image.unrecorded: %w",
			ref, err, errNotRecorded)
	}
	a.knowRef(ctx, ref, stored)
	return stored, nil
}

// knowRef tells the catalog watcher about the recorded change rec of ref.
// A failure is only logged: the change is recorded, and at worst the
// watcher records it once more as image.unrecorded.
func (a *apiServer) knowRef(ctx context.Context, ref catalog.Ref, rec *imagefarmv1.AuditRecord) {
	var err error
	switch rec.GetAction() {
	case imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH, imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_TAG:
		err = a.refs.Set(ctx, ref.String(), rec.GetImageDigest())
	case imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_RM:
		err = a.refs.Delete(ctx, ref.String())
	}
	if err != nil {
		a.log.Warn("recorded image change not passed to the catalog watcher", "image_ref", ref.String(), "error", err)
	}
}

// parseTagRef parses NAME:VERSION or NAME:CHANNEL, not a digest.
func parseTagRef(s string) (catalog.Ref, error) {
	ref, err := parseRef(s)
	if err == nil && ref.Tag == "" {
		err = fmt.Errorf("%w %q: want NAME:VERSION or NAME:CHANNEL here, not a digest", catalog.ErrBadRef, s)
	}
	return ref, err
}

// parseDigest checks a manifest digest a client sent.
func parseDigest(d string) (string, error) {
	if err := ident.Digest(d); err != nil {
		return "", err
	}
	return d, nil
}

// storeWriteErr says what to do when the store refused the controller a
// write: its credentials are read-only, as they were before refs went
// through the controller.
func storeWriteErr(err error) error {
	if errors.Is(err, storage.ErrAccessDenied) {
		return fmt.Errorf("%w: the controller's store credentials may not write refs/ and signatures/; give its S3 user deploy/minio/controller-policy.json: %w", err, errStoreReadOnly)
	}
	return err
}
