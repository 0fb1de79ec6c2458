package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/controller/audit"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// fakeTrail is the audit part of the client API: it streams canned
// records.
type fakeTrail struct {
	imagefarmv1.UnimplementedImageFarmServiceServer

	mu      sync.Mutex
	records []*imagefarmv1.AuditRecord
	lists   []*imagefarmv1.ListAuditRequest
}

func (f *fakeTrail) ListAudit(req *imagefarmv1.ListAuditRequest, stream grpc.ServerStreamingServer[imagefarmv1.ListAuditResponse]) error {
	f.mu.Lock()
	f.lists = append(f.lists, req)
	records := f.records
	f.mu.Unlock()
	for _, r := range records {
		if err := stream.Send(&imagefarmv1.ListAuditResponse{Record: r}); err != nil {
			return err
		}
	}
	return nil
}

// testTrail is a job submitted, one drive written and one refused, chained
// as the controller chains them.
func testTrail(t *testing.T) []*imagefarmv1.AuditRecord {
	t.Helper()
	recs := []*imagefarmv1.AuditRecord{
		{Actor: "peer:10.1.2.3:5123", Action: imagefarmv1.AuditAction_AUDIT_ACTION_JOB_SUBMIT, JobId: "j1", ImageRef: "fleet:1",
			ImageDigest: "sha256:feed", Message: "n1/d1 n1/d2"},
		{Actor: "node:n1", Action: imagefarmv1.AuditAction_AUDIT_ACTION_DRIVE_WRITTEN, JobId: "j1", TaskId: "t1", NodeId: "n1",
			Slot: "usb-0:1", SlotLabel: "bench 1, port 1", DriveId: "d1", DriveSerial: "SER-d1", SizeBytes: 16 << 30,
			ImageRef: "fleet:1", ImageDigest: "sha256:feed", TaskState: imagefarmv1.TaskState_TASK_STATE_DONE},
		{Actor: "node:n1", Action: imagefarmv1.AuditAction_AUDIT_ACTION_GUARD_REFUSED, JobId: "j1", TaskId: "t2", NodeId: "n1",
			Slot: "usb-0:2", DriveId: "d2", DriveSerial: "SER-d2", ImageRef: "fleet:1", ImageDigest: "sha256:feed",
			TaskState: imagefarmv1.TaskState_TASK_STATE_FAILED, FailureReason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MOUNTED,
			Message: "sdc1 is mounted on /media/key"},
	}
	prev := ""
	for i, r := range recs {
		r.Sequence, r.Time, r.PrevHash = uint64(i+1), testTime, prev
		h, err := audit.Hash(r)
		if err != nil {
			t.Fatal(err)
		}
		r.Hash, prev = h, h
	}
	return recs
}

func TestAuditPrintsTheTrail(t *testing.T) {
	f := &fakeTrail{records: testTrail(t)}
	addr := serveFakeAPI(t, f)
	out := mustRun(t, "--insecure", "--controller", addr, "audit", "--since", "2h")
	for _, want := range []string{
		"SEQ  TIME", "job.submit     peer:10.1.2.3:5123  j1 fleet:1",
		"drive.written  node:n1             j1 n1 bench 1, port 1 SER-d1 fleet:1  DONE",
		"guard.refused  node:n1             j1 n1 usb-0:2 SER-d2 fleet:1          FAILED GUARD_MOUNTED sdc1 is mounted on /media/key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit printed\n%s\nwithout %q", out, want)
		}
	}
	if since := f.lists[0].GetSince().AsTime(); time.Since(since) < 2*time.Hour || time.Since(since) > 2*time.Hour+time.Minute {
		t.Errorf("audit --since 2h asked for records since %v", since)
	}

	out = mustRun(t, "--insecure", "--controller", addr, "audit", "--since", "all", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first struct {
		Action string `json:"action"`
		Hash   string `json:"hash"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || len(lines) != 3 ||
		first.Action != "AUDIT_ACTION_JOB_SUBMIT" || first.Hash != f.records[0].GetHash() {
		t.Errorf("audit --json printed %q (%v); want 3 records as JSON lines", out, err)
	}
	if req := f.lists[1]; req.GetSince() != nil {
		t.Errorf("audit --since all sent %v", req)
	}
}

// TestAuditLimitShowsTheNewest: --limit N shows the newest N records,
// oldest first, as a table and as JSON lines.
func TestAuditLimitShowsTheNewest(t *testing.T) {
	addr := serveFakeAPI(t, &fakeTrail{records: testTrail(t)})
	out := mustRun(t, "--insecure", "--controller", addr, "audit", "--limit", "2")
	if !regexp.MustCompile(`(?s)^SEQ[^\n]*\n2 [^\n]*drive.written[^\n]*\n3 [^\n]*guard.refused[^\n]*\n$`).MatchString(out) {
		t.Errorf("audit --limit 2 printed\n%s\nwant records 2 and 3, in that order", out)
	}
	out = mustRun(t, "--insecure", "--controller", addr, "audit", "--limit", "1", "--json")
	var rec struct{ Sequence string }
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Sequence != "3" {
		t.Errorf("audit --limit 1 --json printed %q (%v), want record 3 alone", out, err)
	}
	if out := mustRun(t, "--insecure", "--controller", addr, "audit", "--limit", "9"); strings.Count(out, "\n") != 4 {
		t.Errorf("audit --limit 9 of 3 records printed\n%s\nwant all 3", out)
	}
}

func TestAuditVerify(t *testing.T) {
	intact := testTrail(t)
	out := mustRun(t, "--insecure", "--controller", serveFakeAPI(t, &fakeTrail{records: intact}), "audit", "verify")
	if want := "OK: 3 records verified, 1 to 3\nlast hash " + intact[2].GetHash() + "\n"; out != want {
		t.Errorf("verify of an intact trail printed %q, want %q", out, want)
	}

	edited := testTrail(t)
	edited[1] = proto.CloneOf(edited[1])
	edited[1].DriveSerial = "SER-other"
	out, err := run(t, "--insecure", "--controller", serveFakeAPI(t, &fakeTrail{records: edited}), "audit", "verify")
	want := "audit trail broken: record 2: its hash does not match its content: the record was edited (the 1 record before it verify)"
	if err == nil || err.Error() != want {
		t.Errorf("verify of an edited trail = %v (printed %q), want %q", err, out, want)
	}

	out, err = run(t, "--insecure", "--controller", serveFakeAPI(t, &fakeTrail{records: edited}), "audit", "verify", "--json")
	var broken verifiedJSON
	if jerr := json.Unmarshal([]byte(out), &broken); jerr != nil || !errors.As(err, new(exitError)) ||
		broken != (verifiedJSON{Verified: 1, First: 1, Last: 1, LastHash: edited[0].GetHash(), BrokenAt: 2, Reason: "its hash does not match its content: the record was edited"}) {
		t.Errorf("verify --json of an edited trail = %v, printed %q (%v); want record 2 broken, exit 1", err, out, jerr)
	}
	out = mustRun(t, "--insecure", "--controller", serveFakeAPI(t, &fakeTrail{records: intact}), "audit", "verify", "--json")
	var ok verifiedJSON
	if err := json.Unmarshal([]byte(out), &ok); err != nil || ok != (verifiedJSON{OK: true, Verified: 3, First: 1, Last: 3, LastHash: intact[2].GetHash()}) {
		t.Errorf("verify --json of an intact trail printed %q (%v)", out, err)
	}

	removed := testTrail(t)
	removed = append(removed[:1], removed[2:]...)
	_, err = run(t, "--insecure", "--controller", serveFakeAPI(t, &fakeTrail{records: removed}), "audit", "verify")
	if want := "record 3: follows record 1: record 2 is missing"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("verify of a trail with a record removed = %v, want %q", err, want)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 5, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"7d", now.AddDate(0, 0, -7)},
		{"2026-05-01T08:00:00Z", time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)},
		{"all", time.Time{}},
	} {
		if got, err := parseSince(tc.in, now); err != nil || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "-1h", "yesterday", "3x", "-2d"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("parseSince(%q) = %v, want an error naming --since", bad, err)
		}
	}
}
