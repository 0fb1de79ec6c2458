package controller

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// controllerActor is the actor of what the controller decides by itself:
// fencing a silent node, ending its tasks.
const controllerActor = "controller"

// actor names who is behind a client API call, for the audit trail: the
// user of the token it was authorized with ("user:NAME"), else the
// identity its certificate binds ("client:NAME"), or else its network
// address ("peer:HOST:PORT"). It is the one place that names callers.
func actor(ctx context.Context) string {
	if t, ok := callToken(ctx); ok {
		return "user:" + t.GetName()
	}
	if id, ok := peerIdentity(ctx); ok {
		return string(id.Kind) + ":" + id.Name
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "peer:" + p.Addr.String()
	}
	return controllerActor
}

// nodeActor is the actor of what an imager reported: its node, whose
// certificate the stream was opened with (as actor names it).
func nodeActor(nodeID string) string { return string(pki.KindNode) + ":" + nodeID }

// auditTimeout bounds how long a change waits for its audit record while
// NATS is away; the change itself is already stored.
const auditTimeout = 30 * time.Second

// record appends rec to the audit trail, even when the request that made
// the change has gone away meanwhile. A record that cannot be appended is
// logged in full, as an error: the change it records stands.
func (c *Controller) record(ctx context.Context, rec *imagefarmv1.AuditRecord) *imagefarmv1.AuditRecord {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	stored, err := c.trail.Append(ctx, rec)
	if err != nil {
		c.log.Error("audit record not appended", "record", rec.String(), "error", err)
	}
	return stored
}

// recordTaskEnd records how task t ended on its drive: guard.refused when
// the drive was refused before a byte was written to it (see refused),
// drive.written otherwise.
//
// Callers record a change when the store returned the changed record, even
// with an error: a write whose event is left pending (state.ErrEventPending)
// is stored, and returns what it stored; a failed write returns nil.
func (c *Controller) recordTaskEnd(ctx context.Context, who string, t *imagefarmv1.Task) {
	rec := &imagefarmv1.AuditRecord{Actor: who, Action: imagefarmv1.AuditAction_AUDIT_ACTION_DRIVE_WRITTEN,
		JobId: t.GetJobId(), TaskId: t.GetId(), NodeId: t.GetNodeId(), Slot: t.GetSlot(), SlotLabel: t.GetSlotLabel(),
		DriveId: t.GetDrive().GetId(), DriveSerial: t.GetDrive().GetSerial(), SizeBytes: t.GetDrive().GetSizeBytes(),
		ImageDigest: t.GetVerifiedDigest(), TaskState: t.GetState(),
		FailureReason: t.GetFailure().GetReason(), Message: t.GetFailure().GetMessage()}
	if refused(t) {
		rec.Action = imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED
	}
	if job, err := c.st.GetJobRecord(ctx, t.GetJobId()); err == nil {
		rec.ImageRef, rec.ImageDigest = job.GetImageRef(), cmp.Or(rec.ImageDigest, job.GetManifestDigest())
	}
	c.record(ctx, rec)
}

// refused reports whether task t ended refused, its drive untouched: a
// guard refused the drive, or the imager refused the image itself, as
// unsigned, badly signed or rolled back (checked before a byte is fetched),
// or with a chunk that fails its hash before any byte reached the drive.
// They share guard.refused, whose failure reason says which; a corrupt
// chunk met while writing (--write-while-fetching) is a drive.written
// FAILED, as the drive was changed.
func refused(t *imagefarmv1.Task) bool {
	switch r := t.GetFailure().GetReason(); r {
	case imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_MISSING, imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID,
		imagefarmv1.FailureReason_FAILURE_REASON_ROLLBACK, imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT:
		return t.GetBytesDone() == 0
	default:
		return strings.HasPrefix(r.String(), "FAILURE_REASON_GUARD_")
	}
}

// recordSubmit records that a job was submitted.
func (c *Controller) recordSubmit(ctx context.Context, job *imagefarmv1.Job) {
	c.record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT,
		JobId: job.GetId(), ImageRef: job.GetImageRef(), ImageDigest: job.GetManifestDigest(), Message: targetsText(job.GetTargets())})
}

// targetsText says what a job's targets are: its drives, or its standing
// order.
func targetsText(t *imagefarmv1.Targets) string {
	if so := t.GetStandingOrder(); so != nil {
		sel, _ := protojson.Marshal(so.GetSelector()) // a selector always encodes
		return fmt.Sprintf("standing order for %d drives matching %s", so.GetCount(), sel)
	}
	return strings.Join(t.GetDrives().GetDriveIds(), " ")
}

// ListAudit implements ImageFarmService.ListAudit.
func (c *Controller) ListAudit(req *imagefarmv1.ListAuditRequest, stream imagefarmv1.ImageFarmService_ListAuditServer) error {
	var since time.Time
	if s := req.GetSince(); s != nil {
		if err := s.CheckValid(); err != nil {
			return toStatus(fmt.Errorf("since: %v: %w", err, errBadRequest))
		}
		since = s.AsTime()
	}
	return toStatus(c.trail.Read(stream.Context(), since, int(req.GetLimit()), func(rec *imagefarmv1.AuditRecord) error {
		return stream.Send(&imagefarmv1.ListAuditResponse{Record: rec})
	}))
}
