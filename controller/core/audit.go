package core

import (
	"cmp"
	"context"
	"strings"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// recordTaskEnd records how task t ended on its drive: guard.refused when
// the drive was refused before a byte was written to it (see refused),
// drive.written otherwise.
//
// Callers record a change when the store returned the changed record, even
// with an error: a write whose event is left pending (state.ErrEventPending)
// is stored, and returns what it stored; a failed write returns nil.
func (c *Core) recordTaskEnd(ctx context.Context, who string, t *imagefarmv1.Task) {
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
	c.audit.Record(ctx, rec)
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
