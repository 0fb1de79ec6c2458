package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// controllerActor is the actor of what the controller decides by itself:
// fencing a silent node, ending its tasks.
const controllerActor = core.ControllerActor

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

// auditor appends records to the trail for the controller and its core.
type auditor struct {
	trail *audit.Log
	log   *slog.Logger
}

// Record appends rec to the audit trail, even when the request that made
// the change has gone away meanwhile. A record that cannot be appended is
// logged in full, as an error: the change it records stands.
func (a auditor) Record(ctx context.Context, rec *imagefarmv1.AuditRecord) *imagefarmv1.AuditRecord {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	stored, err := a.trail.Append(ctx, rec)
	if err != nil {
		a.log.Error("audit record not appended", "record", rec.String(), "error", err)
	}
	return stored
}

// recordSubmit records that a job was submitted.
func (a *apiServer) recordSubmit(ctx context.Context, job *imagefarmv1.Job) {
	a.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT,
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
func (a *apiServer) ListAudit(req *imagefarmv1.ListAuditRequest, stream imagefarmv1.ImageFarmService_ListAuditServer) error {
	var since time.Time
	if s := req.GetSince(); s != nil {
		if err := s.CheckValid(); err != nil {
			return fmt.Errorf("since: %v: %w", err, errBadRequest)
		}
		since = s.AsTime()
	}
	return a.audit.trail.Read(stream.Context(), since, int(req.GetLimit()), func(rec *imagefarmv1.AuditRecord) error {
		return stream.Send(&imagefarmv1.ListAuditResponse{Record: rec})
	})
}
