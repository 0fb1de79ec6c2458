package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/controller/refclient"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// refChanger makes the ref and signature changes of image push, tag, rm
// and sign: through the controller, which checks the token's role and
// records each change in the audit trail, or, with no controller (the dev
// laptop), straight in the store, unaudited.
type refChanger interface {
	catalog.RefWriter
	// Tag points channel of target's name at what target names, and
	// returns its digest.
	Tag(ctx context.Context, target catalog.Ref, channel string) (string, error)
	// Remove removes ref, or with a digest every ref of the name pointing
	// at it, and returns the refs removed.
	Remove(ctx context.Context, ref catalog.Ref) ([]catalog.RefTarget, error)
	// Records returns the audit records of the changes made; nil when
	// they are unaudited.
	Records() []*imagefarmv1.AuditRecord
	// Precheck fails as creating name:version would, for the caller's
	// role or a taken name, writing nothing: push asks it before uploading.
	Precheck(ctx context.Context, name, version string) error
}

// unauditedWarning is what a ref change made without a controller says.
const unauditedWarning = "warning: no controller (--controller or IMAGEFARM_CONTROLLER): this change is made straight in the store and is unaudited; a farm's controller records it as image.unrecorded\n"

// openRefChanger returns the controller's refChanger when g names a
// controller, else one on the store g names (cat, opened if nil), after
// warning on stderr that its changes are unaudited (--json results say
// so instead). Call close when done.
func openRefChanger(g *globals, stderr io.Writer, cat *catalog.Catalog) (refChanger, func(), error) {
	if g.controller != "" {
		c, err := dialController(g)
		if err != nil {
			return nil, nil, err
		}
		return refclient.New(c), func() { c.Close() }, nil
	}
	if cat == nil {
		var err error
		if cat, err = openCatalog(g, catalog.Options{}); err != nil {
			return nil, nil, err
		}
	}
	if !g.json { // the result says "audited": false
		fmt.Fprint(stderr, unauditedWarning)
	}
	return storeRefs{cat}, func() {}, nil
}

// openPushRefs opens the refChanger that a push of ref commits through
// and asks it first whether ref may be created (the caller's role, a free
// name), so that a refused push builds and uploads nothing. Call close
// when done.
func openPushRefs(cmd *cobra.Command, g *globals, c *catalog.Catalog, ref catalog.Ref) (refChanger, func(), error) {
	refs, done, err := openRefChanger(g, cmd.ErrOrStderr(), c)
	if err != nil {
		return nil, nil, err
	}
	if err := refs.Precheck(cmd.Context(), ref.Name, ref.Tag); err != nil {
		done()
		return nil, nil, err
	}
	return refs, done, nil
}

// storeRefs changes refs straight in the store, unaudited.
type storeRefs struct{ *catalog.Catalog }

// Precheck checks that name:version is free in the store.
func (s storeRefs) Precheck(ctx context.Context, name, version string) error {
	return s.CheckNewVersion(ctx, name, version, nil)
}

// Tag resolves target in the store and points the channel at it.
func (s storeRefs) Tag(ctx context.Context, target catalog.Ref, channel string) (string, error) {
	d, err := s.Resolve(ctx, target)
	if err != nil {
		return "", err
	}
	return d, s.SetChannel(ctx, target.Name, channel, d)
}

// Records is nil: changes in the store are unaudited.
func (storeRefs) Records() []*imagefarmv1.AuditRecord { return nil }

// changeJSON is the --json result of one ref or signature change.
type changeJSON struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	KeyID  string `json:"key_id,omitempty"`
	// Audited is false for a change made without a controller.
	Audited bool `json:"audited"`
	// AuditSequence is the sequence of the change's audit record.
	AuditSequence uint64 `json:"audit_sequence,omitempty"`
}

// newChangeJSON is the result of the change of ref to digest, recorded
// as rec (nil: unaudited).
func newChangeJSON(ref, digest string, rec *imagefarmv1.AuditRecord) changeJSON {
	return changeJSON{Ref: ref, Digest: digest, Audited: rec != nil, AuditSequence: rec.GetSequence()}
}

// auditNote is how a change's text output names its record: "" when
// unaudited (the warning said so).
func auditNote(rec *imagefarmv1.AuditRecord) string {
	if rec == nil {
		return ""
	}
	return fmt.Sprintf(" (audit record %d)", rec.GetSequence())
}

// lastRecord is the last of the records a refChanger made, nil if none.
func lastRecord(r refChanger) *imagefarmv1.AuditRecord {
	recs := r.Records()
	if len(recs) == 0 {
		return nil
	}
	return recs[len(recs)-1]
}
