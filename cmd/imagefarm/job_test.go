package main

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func testTask(id, drive string, state imagefarmv1.TaskState) *imagefarmv1.Task {
	return &imagefarmv1.Task{
		Id: id, JobId: "j1", NodeId: "n1", State: state, Attempt: 1, CreateTime: testTime,
		Drive: &imagefarmv1.DriveIdentity{Id: drive, Serial: "SER-" + drive, SizeBytes: 16 << 30},
		Slot:  "pci-0000:00:14.0-usb-0:" + drive, SlotLabel: "bench 1, port " + drive,
	}
}

func testJob(state imagefarmv1.JobState, rev uint64, tasks ...*imagefarmv1.Task) *imagefarmv1.Job {
	return &imagefarmv1.Job{
		Id: "j1", ImageRef: "fleet:1", ManifestDigest: "sha256:feed", State: state, CreateTime: testTime, Revision: rev,
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: []string{"n1/d1", "n1/d2"}}}},
		Tasks:   tasks,
	}
}

// taskEvent is a stored task event, or a live progress event when rev is
// the revision of the stored event before it.
func taskEvent(rev uint64, kind imagefarmv1.JobEventKind, t *imagefarmv1.Task, done, total uint64) *imagefarmv1.JobEvent {
	t = proto.CloneOf(t)
	t.BytesDone, t.BytesTotal, t.BytesPerSecond, t.Eta = done, total, 31_500_000, durationpb.New(3e9)
	return &imagefarmv1.JobEvent{Revision: rev, Time: testTime, Kind: kind, Snapshot: &imagefarmv1.JobEvent_Task{Task: t}}
}

// watchFarm has job j1 writing drives d1 and d2 of node n1: GetJob first
// sees it pending at revision 3, events 4 to 9 take it to final, and the
// last GetJob returns it final. d1 verifies; d2 verifies when final is
// SUCCEEDED and fails its read-back otherwise.
func watchFarm(final imagefarmv1.JobState) *fakeAPI {
	state, stateKind, progress := imagefarmv1.TaskState_TASK_STATE_WRITING, imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_STATE_CHANGED, imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS
	t1, t2 := testTask("t1", "d1", state), testTask("t2", "d2", state)
	v1 := testTask("t1", "d1", imagefarmv1.TaskState_TASK_STATE_VERIFYING)
	d1, d2 := testTask("t1", "d1", imagefarmv1.TaskState_TASK_STATE_DONE), testTask("t2", "d2", imagefarmv1.TaskState_TASK_STATE_DONE)
	d1.VerifiedDigest, d1.BytesPerSecond = "sha256:feed", 31_500_000
	d2.VerifiedDigest, d2.BytesPerSecond = "sha256:feed", 29_000_000
	if final != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		d2.State, d2.VerifiedDigest = imagefarmv1.TaskState_TASK_STATE_FAILED, ""
		d2.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_VERIFY_MISMATCH,
			Message: "byte 4096 of d2 read back differs from the image", Offset: proto.Uint64(4096)}
	}
	queued := imagefarmv1.TaskState_TASK_STATE_QUEUED
	end := testJob(final, 9)
	return &fakeAPI{
		jobs: []*imagefarmv1.Job{
			testJob(imagefarmv1.JobState_JOB_STATE_PENDING, 3, testTask("t1", "d1", queued), testTask("t2", "d2", queued)),
			testJob(final, 9, d1, d2),
		},
		events: []*imagefarmv1.JobEvent{
			taskEvent(4, stateKind, t1, 0, 4<<20),
			taskEvent(4, progress, t1, 1<<20, 4<<20),
			taskEvent(5, stateKind, t2, 0, 4<<20),
			taskEvent(5, progress, t2, 2<<20, 4<<20),
			taskEvent(6, stateKind, v1, 0, 4<<20),
			taskEvent(7, stateKind, d1, 4<<20, 4<<20),
			taskEvent(8, stateKind, d2, 4<<20, 4<<20),
			{Revision: 9, Time: testTime, Kind: imagefarmv1.JobEventKind_JOB_EVENT_KIND_JOB_STATE_CHANGED, Snapshot: &imagefarmv1.JobEvent_Job{Job: end}},
		},
	}
}

// watchLines splits watch --json output into its events and the final job.
func watchLines(t *testing.T, out string) ([]*imagefarmv1.JobEvent, *imagefarmv1.Job) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var events []*imagefarmv1.JobEvent
	for _, line := range lines[:len(lines)-1] {
		ev := &imagefarmv1.JobEvent{}
		if err := protojson.Unmarshal([]byte(line), ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		events = append(events, ev)
	}
	job := &imagefarmv1.Job{}
	if err := protojson.Unmarshal([]byte(lines[len(lines)-1]), job); err != nil {
		t.Fatalf("final job line %q: %v", lines[len(lines)-1], err)
	}
	return events, job
}

func TestWatchResumesWithoutLossOrDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		final     imagefarmv1.JobState
		dropAfter []int
		overlap   uint64
		wantFrom  []uint64
		// Progress events are live only: the one after revision 5 is
		// lost when the stream drops right before it.
		wantProgress int
	}{
		{"whole stream", imagefarmv1.JobState_JOB_STATE_SUCCEEDED, nil, 0, []uint64{4}, 2},
		{"dropped mid-way", imagefarmv1.JobState_JOB_STATE_PARTIAL, []int{3}, 0, []uint64{4, 6}, 1},
		{"dropped twice, server resends", imagefarmv1.JobState_JOB_STATE_FAILED, []int{3, 1}, 2, []uint64{4, 6, 6}, 1},
		{"dropped before anything", imagefarmv1.JobState_JOB_STATE_SUCCEEDED, []int{0, 0}, 0, []uint64{4, 4, 4}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := watchFarm(tc.final)
			f.dropAfter, f.overlap = tc.dropAfter, tc.overlap
			out, err := runFarm(t, serveFakeAPI(t, f), "job", "watch", "j1", "--json")
			var from []uint64
			for _, w := range f.watches {
				from = append(from, w.GetFromRevision())
			}
			if !slices.Equal(from, tc.wantFrom) {
				t.Errorf("WatchJob from_revision = %v, want %v", from, tc.wantFrom)
			}
			events, job := watchLines(t, out)
			var stored []uint64
			progress := 0
			for _, ev := range events {
				if ev.GetKind() == imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
					progress++
				} else {
					stored = append(stored, ev.GetRevision())
				}
			}
			if want := []uint64{4, 5, 6, 7, 8, 9}; !slices.Equal(stored, want) || progress != tc.wantProgress {
				t.Errorf("watch --json showed stored revisions %v and %d progress events, want %v and %d:\n%s", stored, progress, want, tc.wantProgress, out)
			}
			if job.GetState() != tc.final || len(job.GetTasks()) != 2 {
				t.Errorf("final job = %v with %d tasks, want %v with 2", job.GetState(), len(job.GetTasks()), tc.final)
			}
			wantErr := tc.final != imagefarmv1.JobState_JOB_STATE_SUCCEEDED
			var exit exitError
			if errors.As(err, &exit) != wantErr || (!wantErr && err != nil) {
				t.Errorf("watch of a %v job = %v, want exitError %v", tc.final, err, wantErr)
			}
		})
	}
}

func TestWatchSummary(t *testing.T) {
	for _, tc := range []struct {
		final imagefarmv1.JobState
		rows  []string
		last  string
	}{
		{imagefarmv1.JobState_JOB_STATE_SUCCEEDED, []string{
			`n1\s+d1\s+bench 1, port d1\s+SER-d1\s+DONE\s+31\.5\s+sha256:feed`,
			`n1\s+d2\s+bench 1, port d2\s+SER-d2\s+DONE\s+29\.0\s+sha256:feed`,
		}, "job j1 SUCCEEDED: 2 of 2 drives verified"},
		{imagefarmv1.JobState_JOB_STATE_PARTIAL, []string{
			`n1\s+d1\s+bench 1, port d1\s+SER-d1\s+DONE\s+31\.5\s+sha256:feed`,
			`n1\s+d2\s+bench 1, port d2\s+SER-d2\s+FAILED\s+29\.0\s+VERIFY_MISMATCH: byte 4096 of d2 read back differs from the image \(at byte 4096\)`,
		}, "job j1 PARTIAL: 1 of 2 drives verified"},
	} {
		f := watchFarm(tc.final)
		f.dropAfter = []int{5}
		out, err := runFarm(t, serveFakeAPI(t, f), "job", "watch", "j1")
		for _, row := range tc.rows {
			if !regexp.MustCompile(`(?m)^` + row + `\s*$`).MatchString(out) {
				t.Errorf("watch of a %v job lacks a row matching %q:\n%s", tc.final, row, out)
			}
		}
		if got := strings.TrimSpace(out); !strings.HasSuffix(got, tc.last) {
			t.Errorf("watch of a %v job ends %q, want %q", tc.final, got[strings.LastIndex(got, "\n")+1:], tc.last)
		}
		succeeded := tc.final == imagefarmv1.JobState_JOB_STATE_SUCCEEDED
		var exit exitError
		if (err == nil) != succeeded || (err != nil && !errors.As(err, &exit)) {
			t.Errorf("watch of a %v job = %v, want nil only for SUCCEEDED, else an exitError", tc.final, err)
		}
	}
}

func TestWatchFinalJobDoesNotStream(t *testing.T) {
	f := watchFarm(imagefarmv1.JobState_JOB_STATE_FAILED)
	f.jobs = f.jobs[1:]
	out, err := runFarm(t, serveFakeAPI(t, f), "job", "watch", "j1")
	if len(f.watches) != 0 || !strings.Contains(out, "job j1 FAILED: 1 of 2 drives verified") {
		t.Errorf("watch of a final job made %d WatchJob calls and printed:\n%s", len(f.watches), out)
	}
	var exit exitError
	if !errors.As(err, &exit) {
		t.Errorf("watch of a FAILED job = %v, want an exitError", err)
	}
}

func TestWatchAfterEventsExpired(t *testing.T) {
	f := watchFarm(imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	f.outOfRange = true
	out, err := runFarm(t, serveFakeAPI(t, f), "job", "watch", "j1")
	if err != nil || len(f.watches) != 1 || !strings.Contains(out, "job j1 SUCCEEDED: 2 of 2 drives verified") {
		t.Errorf("watch whose events expired = %v after %d WatchJobs, want the job's current state and success:\n%s", err, len(f.watches), out)
	}
}

func TestWatchInterrupted(t *testing.T) {
	f := watchFarm(imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	f.events, f.hang = f.events[:3], true
	ctx, cancel := context.WithCancel(t.Context())
	defer time.AfterFunc(300*time.Millisecond, cancel).Stop() // as Ctrl-C does
	_, stderr, err := runFarmContext(ctx, serveFakeAPI(t, f), "job", "watch", "j1")
	var exit exitError
	if !errors.As(err, &exit) || !strings.Contains(stderr, "job j1 goes on: imagefarm job watch j1") {
		t.Errorf("interrupted watch = %v, stderr %q, want an exitError and how to watch again", err, stderr)
	}
}

// TestWatchSaysWhyTheJobWaits follows a standing order that waits, then
// waits for another reason, then runs: watch says each reason once, when
// it changes, on stderr when that is no terminal.
func TestWatchSaysWhyTheJobWaits(t *testing.T) {
	const first, second = "needs 2 more drives: 2 written since inserted (n1/d1, n1/d2)", "needs 1 more drive: 1 busy with other tasks (n1/d2)"
	f := watchFarm(imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	f.jobs[0].WaitingReason = first
	jobEvent := func(rev uint64, why string) *imagefarmv1.JobEvent {
		j := testJob(imagefarmv1.JobState_JOB_STATE_PENDING, rev)
		j.WaitingReason = why
		return &imagefarmv1.JobEvent{Revision: rev, Time: testTime, Kind: imagefarmv1.JobEventKind_JOB_EVENT_KIND_JOB_STATE_CHANGED, Snapshot: &imagefarmv1.JobEvent_Job{Job: j}}
	}
	for i := range f.events {
		f.events[i].Revision += 3
	}
	f.events = append([]*imagefarmv1.JobEvent{jobEvent(4, first), jobEvent(5, second), jobEvent(6, "")}, f.events...)
	f.jobs[1].Revision += 3
	_, stderr, err := runFarmContext(t.Context(), serveFakeAPI(t, f), "job", "watch", "j1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "waiting: " + first + "\nwaiting: " + second + "\n"; !strings.Contains(stderr, want) || strings.Count(stderr, "waiting:") != 2 {
		t.Errorf("watch said on stderr:\n%s\nwant each reason once, in order:\n%s", stderr, want)
	}
}

func TestSubmitBuildsRequest(t *testing.T) {
	drives := func(ids ...string) *imagefarmv1.Targets {
		return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: ids}}}
	}
	order := func(count uint32, sel *imagefarmv1.Selector) *imagefarmv1.Targets {
		return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{Selector: sel, Count: count}}}
	}
	for _, tc := range []struct {
		args []string
		want *imagefarmv1.SubmitJobRequest
	}{
		{[]string{"--drive", "n1/d1", "--drive", "n2/d7", "--discard", "--label-job", "ticket=IT-42"}, &imagefarmv1.SubmitJobRequest{
			Targets: drives("n1/d1", "n2/d7"), Options: &imagefarmv1.JobOptions{Discard: true}, Labels: map[string]string{"ticket": "IT-42"},
		}},
		{[]string{"--count", "5", "--pool", "usb-bench", "--label", "site=lab", "--label", "rack=3", "--node", "n1", "--node", "n2", "--min-size", "16GB", "--removable"},
			&imagefarmv1.SubmitJobRequest{Options: &imagefarmv1.JobOptions{}, Targets: order(5, &imagefarmv1.Selector{
				Pool: "usb-bench", Labels: map[string]string{"site": "lab", "rack": "3"}, NodeIds: []string{"n1", "n2"},
				MinSizeBytes: 16_000_000_000, Removable: proto.Bool(true),
			})}},
		{[]string{"--count", "1", "--min-size", "32GiB", "--removable=false", "--check-capacity"}, &imagefarmv1.SubmitJobRequest{
			Options: &imagefarmv1.JobOptions{CheckCapacity: true}, Targets: order(1, &imagefarmv1.Selector{MinSizeBytes: 32 << 30, Removable: proto.Bool(false)}),
		}},
		{[]string{"--count", "3"}, &imagefarmv1.SubmitJobRequest{Options: &imagefarmv1.JobOptions{}, Targets: order(3, &imagefarmv1.Selector{})}},
		{[]string{"--count", "3", "--partition", "3"}, &imagefarmv1.SubmitJobRequest{Options: &imagefarmv1.JobOptions{Partitions: []uint32{3}}, Targets: order(3, &imagefarmv1.Selector{})}},
		{[]string{"--count", "3", "--keep", "4,5", "--keep", "1"}, &imagefarmv1.SubmitJobRequest{Options: &imagefarmv1.JobOptions{KeepPartitions: []uint32{4, 5, 1}}, Targets: order(3, &imagefarmv1.Selector{})}},
		{[]string{"--device", "5CG1", "--device", "5CG2"}, &imagefarmv1.SubmitJobRequest{
			Options: &imagefarmv1.JobOptions{AfterWrite: imagefarmv1.AfterWrite_AFTER_WRITE_REBOOT},
			Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{
				Devices: []*imagefarmv1.DeviceTarget{{Serial: "5CG1"}, {Serial: "5CG2"}}}}}}},
		{[]string{"--device", "5CG1", "--disk", "S123", "--then", "poweroff"}, &imagefarmv1.SubmitJobRequest{
			Options: &imagefarmv1.JobOptions{AfterWrite: imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF},
			Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{
				Devices: []*imagefarmv1.DeviceTarget{{Serial: "5CG1", DiskSerial: "S123"}}}}}}},
		{[]string{"--model", "HP EliteBook 840 G7", "--count", "40"}, &imagefarmv1.SubmitJobRequest{
			Options: &imagefarmv1.JobOptions{AfterWrite: imagefarmv1.AfterWrite_AFTER_WRITE_REBOOT},
			Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{Model: "HP EliteBook 840 G7", Count: 40}}}}},
	} {
		f := &fakeAPI{jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_PENDING, 3)}}
		out, err := runFarm(t, serveFakeAPI(t, f), append([]string{"job", "submit", "fleet:1"}, tc.args...)...)
		if err != nil || len(f.submits) != 1 {
			t.Errorf("submit %q = %v after %d SubmitJobs (%s)", tc.args, err, len(f.submits), out)
			continue
		}
		got := proto.CloneOf(f.submits[0])
		if got.RequestId == "" {
			t.Errorf("submit %q sent no request_id", tc.args)
		}
		got.RequestId, tc.want.ImageRef = "", "fleet:1"
		if !proto.Equal(got, tc.want) {
			t.Errorf("submit %q sent\n%v\nwant\n%v", tc.args, got, tc.want)
		}
	}
}

func TestSubmitRefusesUnclearTargets(t *testing.T) {
	f := &fakeAPI{jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_PENDING, 3)}}
	addr := serveFakeAPI(t, f)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "say which drives to write"},
		{[]string{"--drive", "n1/d1", "--count", "2"}, "exclude each other"},
		{[]string{"--drive", "n1/d1", "--pool", "usb"}, "--pool selects drives for --count"},
		{[]string{"--drive", "n1/d1", "--min-size", "1GB"}, "--min-size selects drives for --count"},
		{[]string{"--count", "2", "--min-size", "lots"}, `--min-size "lots": want a size such as 16GB or 32GiB`},
		{[]string{"--count", "-1"}, "--count"},
		{[]string{"--count", "2", "--label", "nokey"}, "--label"},
		{[]string{"--device", "5CG1", "--drive", "n1/d1"}, "--drive is for drives on imagers"},
		{[]string{"--device", "5CG1", "--count", "2"}, "--device and --count exclude each other"},
		{[]string{"--device", "5CG1", "--model", "X", "--count", "2"}, "--device and --model exclude each other"},
		{[]string{"--model", "X"}, "say how many devices with --count N"},
		{[]string{"--model", "", "--count", "2"}, "want the exact SMBIOS product name"},
		{[]string{"--model", "X", "--count", "2", "--pool", "p"}, "--pool is for drives on imagers"},
		{[]string{"--device", "5CG1", "--device", "5CG2", "--disk", "S"}, "--disk names the disk of one device"},
		{[]string{"--device", "5CG1", "--then", "explode"}, `--then "explode": want reboot or poweroff`},
		{[]string{"--device", "bad\x1b[2J"}, "want a device's SMBIOS serial"},
		{[]string{"--drive", "n1/d1", "--then", "poweroff"}, "--then is for netbooted devices"},
		{[]string{"--count", "2", "--disk", "S"}, "--disk is for netbooted devices"},
		{[]string{"--count", "2", "--partition", "0"}, "bad partition selection: partition 0: partitions are numbered from 1"},
		{[]string{"--count", "2", "--keep", "-1"}, "bad partition selection: partition -1: partitions are numbered from 1"},
		{[]string{"--count", "2", "--keep", "4294967300"}, "partition 4294967300: partitions are numbered from 1"},
		{[]string{"--count", "2", "--keep", "4,4"}, "partition 4 is named twice"},
		{[]string{"--count", "2", "--keep", "4", "--partition", "3"}, "--partition and --keep exclude each other"},
		{[]string{"--count", "2", "--keep", "4", "--check-capacity"}, "cannot be asked with --partition or --keep"},
		{[]string{"--count", "2", "--partition", "three"}, "--partition"},
	} {
		out, err := runFarm(t, addr, append([]string{"job", "submit", "fleet:1"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("submit %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	if len(f.submits) != 0 {
		t.Errorf("bad submits reached the controller %d times, want 0", len(f.submits))
	}
}

func TestSubmitRetryKeepsRequestID(t *testing.T) {
	f := &fakeAPI{submitFailures: 2, jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_PENDING, 3,
		testTask("t1", "d1", imagefarmv1.TaskState_TASK_STATE_QUEUED), testTask("t2", "d2", imagefarmv1.TaskState_TASK_STATE_QUEUED))}}
	out, err := runFarm(t, serveFakeAPI(t, f), "job", "submit", "fleet:1", "--drive", "n1/d1", "--drive", "n1/d2")
	if err != nil || len(f.submits) != 3 {
		t.Fatalf("submit against a controller that fails twice = %v after %d attempts, want success on the 3rd:\n%s", err, len(f.submits), out)
	}
	if id := f.submits[0].GetRequestId(); id == "" || f.submits[1].GetRequestId() != id || f.submits[2].GetRequestId() != id {
		t.Errorf("retried submits carried request ids %q, %q, %q, want one id", id, f.submits[1].GetRequestId(), f.submits[2].GetRequestId())
	}
	for _, want := range []string{"job j1 submitted: fleet:1 (sha256:feed) to 2 drives", "t2  ", "bench 1, port d2", "QUEUED", "follow it with: imagefarm job watch j1"} {
		if !strings.Contains(out, want) {
			t.Errorf("submit output lacks %q:\n%s", want, out)
		}
	}
	runFarm(t, serveFakeAPI(t, f), "job", "submit", "fleet:1", "--drive", "n1/d1", "--request-id", "ci-build-77")
	if got := f.submits[len(f.submits)-1].GetRequestId(); got != "ci-build-77" {
		t.Errorf("submit --request-id ci-build-77 sent %q", got)
	}
}

func TestSubmitJSONAndWatch(t *testing.T) {
	f := &fakeAPI{jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_PENDING, 3)}}
	out, err := runFarm(t, serveFakeAPI(t, f), "job", "submit", "fleet:1", "--drive", "n1/d1", "--json")
	var job map[string]any
	if err != nil || json.Unmarshal([]byte(out), &job) != nil || job["id"] != "j1" || job["manifest_digest"] != "sha256:feed" {
		t.Errorf("submit --json = %v:\n%s", err, out)
	}

	f = watchFarm(imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	f.dropAfter = []int{4}
	out, err = runFarm(t, serveFakeAPI(t, f), "job", "submit", "fleet:1", "--drive", "n1/d1", "--drive", "n1/d2", "--watch", "--json")
	first, rest, _ := strings.Cut(out, "\n")
	submitted := &imagefarmv1.Job{}
	if err != nil || protojson.Unmarshal([]byte(first), submitted) != nil || submitted.GetId() != "j1" {
		t.Fatalf("submit --watch --json = %v, first line %q, want the submitted job", err, first)
	}
	if events, final := watchLines(t, rest); len(events) != 8 || final.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("submit --watch --json showed %d events and a %v job, want 8 and SUCCEEDED:\n%s", len(events), final.GetState(), out)
	}
}

func TestJobLs(t *testing.T) {
	job := func(id string, state imagefarmv1.JobState, done uint32) *imagefarmv1.Job {
		j := testJob(state, 0)
		j.Id, j.TaskCounts = id, &imagefarmv1.TaskCounts{Done: done, Failed: 2 - done}
		return j
	}
	const why = "needs 1 more drive: 1 written since inserted (n1/d2); a standing order takes only freshly inserted drives: pull and re-insert them"
	waiting := job("j3", imagefarmv1.JobState_JOB_STATE_RUNNING, 1)
	waiting.WaitingReason = why
	stale := job("j2", imagefarmv1.JobState_JOB_STATE_FAILED, 0)
	stale.WaitingReason = "from an older controller" // a final job waits for nothing
	pages := [][]*imagefarmv1.Job{
		{waiting, stale},
		{job("j1", imagefarmv1.JobState_JOB_STATE_SUCCEEDED, 2)},
	}
	f := &fakeAPI{pages: pages}
	addr := serveFakeAPI(t, f)
	out, err := runFarm(t, addr, "job", "ls", "--state", "running", "--state", "FAILED,succeeded", "--image", "fleet", "--node", "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{`(?m)^j3\s+fleet:1\s+RUNNING\s+1/2 \(1 failed\)\s+2025-03-14 \S+\n    waiting: ` + regexp.QuoteMeta(why) + "\n",
		`(?m)^j2\s+fleet:1\s+FAILED\s+0/2 \(2 failed\)\s+\S+ \S+\nj1\s+fleet:1\s+SUCCEEDED\s+2/2\s+2025-03-14`} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Errorf("job ls lacks rows matching %q:\n%s", row, out)
		}
	}
	wantStates := []imagefarmv1.JobState{imagefarmv1.JobState_JOB_STATE_RUNNING, imagefarmv1.JobState_JOB_STATE_FAILED, imagefarmv1.JobState_JOB_STATE_SUCCEEDED}
	if r := f.lists[0]; !slices.Equal(r.GetStates(), wantStates) || r.GetImage() != "fleet" || r.GetNodeId() != "n1" || len(f.lists) != 2 || f.lists[1].GetPageToken() != "1" {
		t.Errorf("job ls sent %v, want states %v, image fleet, node n1, then page 1", f.lists, wantStates)
	}

	f = &fakeAPI{pages: pages}
	out, err = runFarm(t, serveFakeAPI(t, f), "job", "ls", "--json", "--limit", "2")
	var got []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || got[0]["id"] != "j3" || got[1]["state"] != "JOB_STATE_FAILED" || len(f.lists) != 1 {
		t.Errorf("job ls --json --limit 2 = %v after %d calls:\n%s", err, len(f.lists), out)
	}

	out, err = runFarm(t, serveFakeAPI(t, &fakeAPI{pages: [][]*imagefarmv1.Job{nil}}), "job", "ls", "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("job ls --json of no jobs = %v, %q, want []", err, out)
	}
}

func TestJobCancel(t *testing.T) {
	f := &fakeAPI{jobs: []*imagefarmv1.Job{testJob(imagefarmv1.JobState_JOB_STATE_CANCELED, 12)}}
	addr := serveFakeAPI(t, f)
	if out, err := runFarm(t, addr, "job", "cancel", "j1"); err != nil || out != "job j1 CANCELED\n" {
		t.Errorf("job cancel j1 = %v, %q, want job j1 CANCELED", err, out)
	}
	out, err := runFarm(t, addr, "job", "cancel", "j1", "--json")
	job := &imagefarmv1.Job{}
	if err != nil || protojson.Unmarshal([]byte(out), job) != nil || job.GetState() != imagefarmv1.JobState_JOB_STATE_CANCELED {
		t.Errorf("job cancel --json = %v:\n%s", err, out)
	}
}

// TestWatchAndAuditKeepTheTerminal: a failure message or an audit detail
// carrying escape sequences and line breaks (from a hostile node or a drive's
// own strings) is printed on its line with the controls as spaces: it can
// neither rewrite the operator's terminal nor forge a line of its own.
func TestWatchAndAuditKeepTheTerminal(t *testing.T) {
	const hostile = "read back differs\x1b[2J\x1b]0;owned\x07\nd9: SER-d9 verified"
	f := watchFarm(imagefarmv1.JobState_JOB_STATE_PARTIAL)
	f.jobs[1].GetTasks()[1].GetFailure().Message = hostile
	f.events[6].GetTask().Failure = &imagefarmv1.Failure{Message: hostile}
	f.events[6].GetTask().State = imagefarmv1.TaskState_TASK_STATE_FAILED
	out, _ := runFarm(t, serveFakeAPI(t, f), "job", "watch", "j1")

	trail := testTrail(t)
	trail[2].Message, trail[2].Actor = hostile, "node:n1\x1b[8m"
	audit := mustRun(t, "--insecure", "--controller", serveFakeAPI(t, &fakeTrail{records: trail}), "audit", "--since", "all")
	for name, out := range map[string]string{"job watch": out, "audit": audit} {
		if strings.ContainsAny(out, "\x1b\x07\r") {
			t.Errorf("%s printed a control character:\n%q", name, out)
		}
		if regexp.MustCompile(`(?m)^d9: SER-d9 verified`).MatchString(out) {
			t.Errorf("%s let a reported message start a line of its own:\n%s", name, out)
		}
		if !strings.Contains(out, "read back differs") {
			t.Errorf("%s dropped the message instead of showing it:\n%s", name, out)
		}
	}
}
