package controller_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/audit"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
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
	f := farm.Start(t, farm.Options{HeartbeatTTL: 1500 * time.Millisecond, PushImage: true})
	im := f.Connect(t, "n1", slotted("d1", "port 1"), slotted("d2", "port 2"), slotted("d3", "port 3"))
	im.Beat()
	f.Connect(t, "n2", usbDrive("e1")) // silent: fenced after the TTL
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1", "n1/d2", "n1/d3")})
	if err != nil {
		t.Fatal(err)
	}
	job := sub.GetJob()
	assigned := map[string]*imagefarmv1.TaskAssignment{}
	for range 3 {
		a := im.Assignment()
		assigned[a.GetDrive().GetId()] = a
	}
	im.Result(assigned["d1"], imagefarmv1.TaskState_TASK_STATE_DONE, f.Digest)
	im.Send(&imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: &imagefarmv1.TaskResult{
		TaskId: assigned["d2"].GetTaskId(), Epoch: assigned["d2"].GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
		Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MOUNTED, Message: "sdc1 is mounted"}}}})
	testenv.Eventually(t, 10*time.Second, "d1 and d2 ended", func() bool {
		resp, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: job.GetId()})
		c := resp.GetJob().GetTaskCounts()
		return err == nil && c.GetDone() == 1 && c.GetFailed() == 1
	})
	if _, err := f.API.CancelJob(t.Context(), &imagefarmv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
	cert, key := f.PKI.Issue(t, pki.Request{Kind: pki.KindClient, Name: "alice"})
	tlsCfg, err := pki.ClientConfig(f.PKI.CAFile(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	alice := imagefarmv1.NewImageFarmServiceClient(f.Dial(t, credentials.NewTLS(tlsCfg),
		f.Bearer(f.Token(t, "alice", imagefarmv1.Role_ROLE_ADMIN))))
	tag, err := alice.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: "img:1", Channel: "stable"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "n2 fenced", func() bool {
		recs, _ := trail(t, f.API)
		return slices.ContainsFunc(recs, func(r *imagefarmv1.AuditRecord) bool {
			return r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_NODE_FENCED
		})
	})

	recs, err := trail(t, f.API)
	if err != nil {
		t.Fatalf("the trail does not verify: %v", err)
	}
	var got []string
	for i, r := range recs {
		got = append(got, summary(r))
		if r.GetSequence() != uint64(i+1) || r.GetTime() == nil {
			t.Errorf("record %d has sequence %d and time %v", i+1, r.GetSequence(), r.GetTime())
		}
		if r.GetJobId() != "" && (r.GetJobId() != job.GetId() || r.GetImageDigest() != f.Digest) {
			t.Errorf("record %s is of job %s with image %s, want job %s with %s", summary(r), r.GetJobId(), r.GetImageDigest(), job.GetId(), f.Digest)
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
		"IMAGE_TAG user:alice image=img:stable",
		"JOB_CANCEL user:admin image=img:1 message=the job was RUNNING",
		"JOB_SUBMIT user:admin image=img:1 message=n1/d1 n1/d2 n1/d3",
		"NODE_FENCED controller node=n2 message=no heartbeat for 1.5s: epoch raised to 2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !proto.Equal(tag.GetRecord(), recs[slices.IndexFunc(recs, func(r *imagefarmv1.AuditRecord) bool {
		return r.GetAction() == imagefarmv1.AuditAction_AUDIT_ACTION_IMAGE_TAG
	})]) {
		t.Errorf("SetImageChannel returned %v, not the stored record", tag.GetRecord())
	}
}

// recordTag points the channel img:channel at img:1 through the API,
// which records it.
func recordTag(t *testing.T, api imagefarmv1.ImageFarmServiceClient, channel string) {
	t.Helper()
	if _, err := api.SetImageChannel(t.Context(), &imagefarmv1.SetImageChannelRequest{ImageRef: "img:1", Channel: channel}); err != nil {
		t.Fatal(err)
	}
}

// TestAuditVerifyDetectsEditedLogs copies a farm's trail, doctored, into
// the audit stream of a fresh farm (the stream itself refuses deletes and
// purges, so copying is how a log gets edited) and checks that verifying
// it names the record where it was edited.
func TestAuditVerifyDetectsEditedLogs(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	for _, ch := range []string{"a1", "a2", "a3", "a4", "a5"} {
		recordTag(t, f.API, ch)
	}
	orig, err := trail(t, f.API)
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
			copyFarm := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
			if recs, err := trail(t, copyFarm.API); err != nil || len(recs) != 0 { // its stream exists now
				t.Fatalf("a new farm's trail: %v, %v", recs, err)
			}
			for _, r := range tt.edit(cloneAll(orig)) {
				data, _ := proto.Marshal(r)
				if _, err := copyFarm.JS.Publish(t.Context(), audit.Subject, data); err != nil {
					t.Fatal(err)
				}
			}
			_, err := trail(t, copyFarm.API)
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
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	list := func(req *imagefarmv1.ListAuditRequest) error {
		stream, err := f.API.ListAudit(t.Context(), req)
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
		{"since out of range", list(&imagefarmv1.ListAuditRequest{Since: &timestamppb.Timestamp{Seconds: 1 << 62}}), "since:"},
	} {
		if st, _ := status.FromError(tc.err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: %v, want InvalidArgument with %q", tc.name, tc.err, tc.msg)
		}
	}
}
