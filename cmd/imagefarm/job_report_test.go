package main

import (
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func TestJobReportListsFinishedDrivesInTheOrderTheyEnded(t *testing.T) {
	at := func(s int) *timestamppb.Timestamp {
		return timestamppb.New(testTime.AsTime().Add(time.Duration(s) * time.Second))
	}
	d1 := testTask("t1", "d1", imagefarmv1.TaskState_TASK_STATE_DONE)
	d1.VerifiedDigest, d1.FinishTime = "sha256:feed", at(20)
	d2 := testTask("t2", "d2", imagefarmv1.TaskState_TASK_STATE_FAILED)
	d2.FinishTime = at(10)
	d2.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_FAKE_CAPACITY, Message: "advertises 64 GB, holds 8 GB"}
	d3 := testTask("t3", "d3", imagefarmv1.TaskState_TASK_STATE_WRITING) // not ended: not in the record
	addr := serveFakeAPI(t, &fakeAPI{jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_RUNNING, 9, d1, d2, d3)}})

	out, err := runFarm(t, addr, "job", "report", "j1", "--csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("report --csv is not CSV: %v\n%s", err, out)
	}
	if len(rows) != 3 || !slices.Equal(rows[0], reportColumns) {
		t.Fatalf("report --csv = %q, want the header and 2 rows", rows)
	}
	col := func(row []string, name string) string { return row[slices.Index(reportColumns, name)] }
	first, second := rows[1], rows[2]
	if col(first, "serial") != "SER-d2" || col(first, "result") != "FAILED" || col(first, "failure") != "FAKE_CAPACITY" {
		t.Errorf("first row %q, want d2's failure (it ended first)", first)
	}
	if col(second, "serial") != "SER-d1" || col(second, "verified_digest") != "sha256:feed" ||
		col(second, "slot_label") != "bench 1, port d1" || col(second, "finished") != "2025-03-14T09:26:20Z" {
		t.Errorf("second row %q, want d1 verified in its slot at 09:26:20", second)
	}

	out, err = runFarm(t, addr, "job", "report", "j1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got []reportRow
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 || got[1].VerifiedDigest != "sha256:feed" {
		t.Errorf("report --json = %s (%v), want 2 rows, the second verified", out, err)
	}

	out, err = runFarm(t, addr, "job", "report", "j1")
	if err != nil || !strings.Contains(out, "SER-d1") || !strings.Contains(out, "FAKE_CAPACITY: advertises 64 GB, holds 8 GB") {
		t.Errorf("report = %s (%v), want a table of both drives", out, err)
	}
	if _, err := runFarm(t, addr, "job", "report", "j1", "--csv", "--json"); err == nil {
		t.Errorf("report --csv --json succeeded, want a refusal")
	}
}

// TestJobReportShowsAResetsKeepList: a reset task's record prints its
// keep-list, each file with its hash before and after, and says profiles
// were removed; --json carries the same.
func TestJobReportShowsAResetsKeepList(t *testing.T) {
	d1 := testTask("t1", "d1", imagefarmv1.TaskState_TASK_STATE_DONE)
	d1.VerifiedDigest, d1.FinishTime = "sha256:feed", testTime
	d1.ResetReport = &imagefarmv1.ResetReport{ProfilesRemoved: true, Kept: []*imagefarmv1.KeptFile{
		{Path: "ProgramData/Microsoft/Provisioning/Company.ppkg", SizeBytes: 42, Sha256Before: "ab12", Sha256After: "ab12"}}}
	addr := serveFakeAPI(t, &fakeAPI{jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_SUCCEEDED, 1, d1)}})
	out, err := runFarm(t, addr, "job", "report", "j1")
	if err != nil || !strings.Contains(out, "kept 1 file; user profiles, apps and settings removed: true") ||
		!strings.Contains(out, "ProgramData/Microsoft/Provisioning/Company.ppkg") || !strings.Contains(out, "ab12") {
		t.Errorf("job report = %v\n%s\nwant the keep-list with its hashes", err, out)
	}
	js, err := runFarm(t, addr, "job", "report", "j1", "--json")
	var rows []reportRow
	if err != nil || json.Unmarshal([]byte(js), &rows) != nil || len(rows) != 1 || len(rows[0].Kept) != 1 || rows[0].Kept[0].SHA256After != "ab12" {
		t.Errorf("job report --json = %v\n%s\nwant the keep-list", err, js)
	}
}
