package controller_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// trail reads the whole audit trail through ListAudit, as imagefarm audit
// verify does, and checks it as a chain.
func trail(t *testing.T, api imagefarmv1.ImageFarmServiceClient) ([]*imagefarmv1.AuditRecord, error) {
	t.Helper()
	stream, err := api.ListAudit(t.Context(), &imagefarmv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*imagefarmv1.AuditRecord
	var chain audit.Chain
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		recs = append(recs, resp.GetRecord())
		if err := chain.Add(resp.GetRecord()); err != nil {
			return recs, err
		}
	}
}

// summary is what a record says, without the parts that differ per run.
func summary(r *imagefarmv1.AuditRecord) string {
	who := r.GetActor()
	if strings.HasPrefix(who, "peer:127.0.0.1:") {
		who = "peer"
	}
	parts := []string{strings.TrimPrefix(r.GetAction().String(), "AUDIT_ACTION_"), who}
	for _, kv := range [][2]string{{"node", r.GetNodeId()}, {"slot", r.GetSlotLabel()}, {"serial", r.GetDriveSerial()},
		{"image", r.GetImageRef()}, {"message", r.GetMessage()}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if s := r.GetTaskState(); s != 0 {
		parts = append(parts, strings.TrimPrefix(s.String(), "TASK_STATE_"))
	}
	if f := r.GetFailureReason(); f != 0 {
		parts = append(parts, strings.TrimPrefix(f.String(), "FAILURE_REASON_"))
	}
	return strings.Join(parts, " ")
}

func slotted(id, label string) *imagefarmv1.Drive {
	d := usbDrive(id)
	d.Slot, d.SlotLabel = "usb-0:"+id, label
	return d
}

func TestAuditRecordsEveryActionInAChain(t *testing.T) {
	f := startFarm(t, 1500*time.Millisecond)
	im := f.connect(t, "n1", slotted("d1", "port 1"), slotted("d2", "port 2"), slotted("d3", "port 3"))
	im.beat(t)
	f.connect(t, "n2", usbDrive("e1")) // silent: fenced after the TTL
	sub, err := f.api.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1", "n1/d2", "n1/d3")})
	if err != nil {
		t.Fatal(err)
	}
	job := sub.GetJob()
	assigned := map[string]*imagefarmv1.TaskAssignment{}
	for range 3 {
		a := im.assignment()
		assigned[a.GetDrive().GetId()] = a
	}
	im.result(assigned["d1"], imagefarmv1.TaskState_TASK_STATE_DONE, f.digest)
	im.send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: assigned["d2"].GetTaskId(), Epoch: assigned["d2"].GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
		Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MOUNTED, Message: "sdc1 is mounted"}}}})
	waitFor(t, "d1 and d2 ended", func() bool {
		resp, err := f.api.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: job.GetId()})
		c := resp.GetJob().GetTaskCounts()
		return err == nil && c.GetDone() == 1 && c.GetFailed() == 1
	})
	if _, err := f.api.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
	cert, key := f.pki.Issue(t, pki.Request{Kind: pki.KindClient, Name: "alice"})
	tlsCfg, err := pki.ClientConfig(f.pki.CAFile(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	alice := imagefarmv1.NewImageFarmServiceClient(f.dial(t, credentials.NewTLS(tlsCfg),
		grpc.WithPerRPCCredentials(tokens.Bearer{Secret: storeToken(t, f.js, "alice", imagefarmv1.Role_ROLE_ADMIN)})))
	push, err := alice.RecordImageChange(t.Context(), &imagefarmv1.RecordImageChangeRequest{
		Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH, ImageRef: "img:1", ImageDigest: f.digest, SizeBytes: 900000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 fenced", func() bool {
		recs, _ := trail(t, f.api)
		return slices.ContainsFunc(recs, func(r *imagefarmv1.AuditRecord) bool {
			return r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_NODE_FENCED
		})
	})

	recs, err := trail(t, f.api)
	if err != nil {
		t.Fatalf("the trail does not verify: %v", err)
	}
	var got []string
	for i, r := range recs {
		got = append(got, summary(r))
		if r.GetSequence() != uint64(i+1) || r.GetTime() == nil {
			t.Errorf("record %d has sequence %d and time %v", i+1, r.GetSequence(), r.GetTime())
		}
		if r.GetJobId() != "" && (r.GetJobId() != job.GetId() || r.GetImageDigest() != f.digest) {
			t.Errorf("record %s is of job %s with image %s, want job %s with %s", summary(r), r.GetJobId(), r.GetImageDigest(), job.GetId(), f.digest)
		}
		if r.GetDriveSerial() != "" && (r.GetSizeBytes() != 64<<20 || r.GetTaskId() == "" || r.GetDriveId() == "") {
			t.Errorf("drive record %v lacks its task, drive id or size", r)
		}
	}
	slices.Sort(got)
	want := []string{
		"DRIVE_WRITTEN node:n1 node=n1 slot=port 1 serial=SN-d1 image=img:1 DONE",
		"DRIVE_WRITTEN user:admin node=n1 slot=port 3 serial=SN-d3 image=img:1 CANCELED",
		"GUARD_REFUSED node:n1 node=n1 slot=port 2 serial=SN-d2 image=img:1 message=sdc1 is mounted FAILED GUARD_MOUNTED",
		"IMAGE_PUSH user:alice image=img:1",
		"JOB_CANCEL user:admin image=img:1 message=the job was RUNNING",
		"JOB_SUBMIT user:admin image=img:1 message=n1/d1 n1/d2 n1/d3",
		"NODE_FENCED controller node=n2 message=no heartbeat for 1.5s: epoch raised to 2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !proto.Equal(push.GetRecord(), recs[slices.IndexFunc(recs, func(r *imagefarmv1.AuditRecord) bool {
		return r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH
	})]) {
		t.Errorf("RecordImageChange returned %v, not the stored record", push.GetRecord())
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
	}
}

// recordRemoval records the removal of ref, which the catalog does not hold.
func recordRemoval(t *testing.T, api imagefarmv1.ImageFarmServiceClient, ref string) {
	t.Helper()
	if _, err := api.RecordImageChange(t.Context(), &imagefarmv1.RecordImageChangeRequest{
		Action: imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_RM, ImageRef: ref}); err != nil {
		t.Fatal(err)
	}
}

// TestImageChangesAreCheckedAgainstTheCatalog: a reported push, tag,
// removal or signature is recorded only when the catalog shows it, and is
// otherwise refused naming what the catalog holds.
func TestImageChangesAreCheckedAgainstTheCatalog(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	key, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.cat.ManifestByDigest(t.Context(), f.digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cat.AddSignature(t.Context(), f.digest, key.Public(""), key.SignImage(m, f.digest)); err != nil {
		t.Fatal(err)
	}
	if err := f.cat.SetChannel(t.Context(), "img", "stable", f.digest); err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("ab", 32)
	push, tag, rm, sign := imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH, imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_TAG,
		imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_RM, imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_SIGN
	for _, tc := range []struct {
		name string
		req  *imagefarmv1.RecordImageChangeRequest
		msg  string // "" when recorded
	}{
		{"push as stored", &imagefarmv1.RecordImageChangeRequest{Action: push, ImageRef: "img:1", ImageDigest: f.digest}, ""},
		{"tag as stored", &imagefarmv1.RecordImageChangeRequest{Action: tag, ImageRef: "img:stable", ImageDigest: f.digest}, ""},
		{"removal of what is gone", &imagefarmv1.RecordImageChangeRequest{Action: rm, ImageRef: "img:2"}, ""},
		{"signature stored", &imagefarmv1.RecordImageChangeRequest{Action: sign, ImageRef: "img:1", ImageDigest: f.digest, KeyId: key.ID}, ""},
		{"push of another digest", &imagefarmv1.RecordImageChangeRequest{Action: push, ImageRef: "img:1", ImageDigest: other},
			"img:1 points at " + f.digest + " in the catalog, not " + other},
		{"push of what is not there", &imagefarmv1.RecordImageChangeRequest{Action: push, ImageRef: "ghost:1", ImageDigest: other}, "ghost:1 is not in the catalog"},
		{"tag of another digest", &imagefarmv1.RecordImageChangeRequest{Action: tag, ImageRef: "img:stable", ImageDigest: other}, "img:stable points at"},
		{"removal of what is there", &imagefarmv1.RecordImageChangeRequest{Action: rm, ImageRef: "img:1"}, "img:1 is still in the catalog"},
		{"signature not stored", &imagefarmv1.RecordImageChangeRequest{Action: sign, ImageRef: "img:1", ImageDigest: f.digest, KeyId: "0123456789abcdef"},
			`no signature by key "0123456789abcdef" in the catalog (keys: ` + key.ID + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.api.RecordImageChange(t.Context(), tc.req)
			if tc.msg == "" {
				if err != nil || resp.GetRecord().GetAction() != tc.req.GetAction() || resp.GetRecord().GetImageRef() != tc.req.GetImageRef() {
					t.Fatalf("RecordImageChange = %v, %v; want it recorded", resp, err)
				}
				if tc.req.GetAction() == sign && resp.GetRecord().GetMessage() != "key "+key.ID {
					t.Errorf("sign record says %q, want the key %s", resp.GetRecord().GetMessage(), key.ID)
				}
				return
			}
			if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("RecordImageChange = %v, want FailedPrecondition saying %q", err, tc.msg)
			}
		})
	}
	recs, err := trail(t, f.api)
	if err != nil || len(recs) != 4 {
		t.Errorf("trail: %d records, %v; want the 4 changes the catalog shows", len(recs), err)
	}
}

// TestAuditVerifyDetectsEditedLogs copies a farm's trail, doctored, into
// the audit stream of a fresh farm (the stream itself refuses deletes and
// purges, so copying is how a log gets edited) and checks that verifying
// it names the record where it was edited.
func TestAuditVerifyDetectsEditedLogs(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	for _, ref := range []string{"a:1", "a:2", "a:3", "a:4", "a:5"} {
		recordRemoval(t, f.api, ref)
	}
	orig, err := trail(t, f.api)
	if err != nil || len(orig) != 5 {
		t.Fatalf("the original trail: %d records, %v; want 5 that verify", len(orig), err)
	}
	tests := []struct {
		name   string
		edit   func([]*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord
		broken string // "" for a copy that verifies
	}{
		{"intact copy", func(r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord { return r }, ""},
		{"image ref edited", func(r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			r[2].ImageRef = "evil:1"
			return r
		}, "record 3: its hash does not match its content: the record was edited"},
		{"actor edited and rehashed", func(r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			r[2].Actor = "peer:10.0.0.1:1"
			r[2].Hash, _ = audit.Hash(r[2])
			return r
		}, "record 4: prev_hash does not match record 3: the log was edited"},
		{"record removed", func(r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			return append(r[:2], r[3:]...)
		}, "record 4: follows record 2: record 3 is missing: the log was edited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			copyFarm := startFarm(t, 5*time.Second)
			if recs, err := trail(t, copyFarm.api); err != nil || len(recs) != 0 { // its stream exists now
				t.Fatalf("a new farm's trail: %v, %v", recs, err)
			}
			for _, r := range tt.edit(cloneAll(orig)) {
				data, _ := proto.Marshal(r)
				if _, err := copyFarm.js.Publish(t.Context(), audit.Subject, data); err != nil {
					t.Fatal(err)
				}
			}
			_, err := trail(t, copyFarm.api)
			if got := errText(err); got != tt.broken {
				t.Errorf("verify = %q, want %q", got, tt.broken)
			}
		})
	}
}

func cloneAll(recs []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
	out := make([]*imagefarmv1.AuditRecord, len(recs))
	for i, r := range recs {
		out[i] = proto.CloneOf(r)
	}
	return out
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestAuditBadRequests(t *testing.T) {
	f := startFarm(t, 5*time.Second)
	change := func(req *imagefarmv1.RecordImageChangeRequest) error {
		_, err := f.api.RecordImageChange(t.Context(), req)
		return err
	}
	push := imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_PUSH
	list := func(req *imagefarmv1.ListAuditRequest) error {
		stream, err := f.api.ListAudit(t.Context(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		msg  string
	}{
		{"not an image action", change(&imagefarmv1.RecordImageChangeRequest{Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT, ImageRef: "a:1"}), "not an image change"},
		{"no action", change(&imagefarmv1.RecordImageChangeRequest{ImageRef: "a:1"}), "not an image change"},
		{"bad ref", change(&imagefarmv1.RecordImageChangeRequest{Action: push, ImageRef: "../a:1"}), "must be 1-128 letters"},
		{"1 MiB digest", change(&imagefarmv1.RecordImageChangeRequest{Action: push, ImageRef: "a:1", ImageDigest: strings.Repeat("x", 1<<20)}), "image digest is 1048576 bytes"},
		{"since out of range", list(&imagefarmv1.ListAuditRequest{Since: &timestamppb.Timestamp{Seconds: 1 << 62}}), "since:"},
	} {
		if st, _ := status.FromError(tc.err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: %v, want InvalidArgument with %q", tc.name, tc.err, tc.msg)
		}
	}
}
