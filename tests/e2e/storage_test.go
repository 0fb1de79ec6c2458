package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestStorageFaults runs jobs while the imagers' storage, behind the fault
// proxy, cuts connections, lags, refuses connections for 20 s and then for
// good; and with a chunk object corrupted and one truncated in MinIO. Jobs
// complete through what the retry budget covers, and otherwise fail with a
// named reason; a bad chunk is never written as good.
func TestStorageFaults(t *testing.T) {
	requireE2E(t)
	const budget = 25 * time.Second
	f, proxy := throttled(t, farmConfig{nodes: map[string]int{"n1": 4}, driveSize: 20 << 20,
		imagerArgs: []string{"--storage-retry-budget", budget.String()}}, 8<<20)
	drives := []string{"n1/virt-d1.img", "n1/virt-d2.img", "n1/virt-d3.img", "n1/virt-d4.img"}
	run := func(ref string, fault func(id string)) (*imagefarmv1.Job, time.Duration) {
		f.pushImage(ref, 16<<20)
		id := f.submit(drivesJob(ref, drives...))
		testenv.Eventually(f.t, 60*time.Second, "a task under way", func() bool {
			return countTasks(f.job(id), "", func(t *imagefarmv1.Task) bool { return running(t.GetState()) }) > 0
		})
		fault(id)
		t0 := time.Now()
		return waitFinal(t, f, id), time.Since(t0)
	}
	var jobs []string
	expect := func(name string, job *imagefarmv1.Job, state imagefarmv1.JobState, reason imagefarmv1.FailureReason) {
		t.Helper()
		jobs = append(jobs, job.GetId())
		if job.GetState() != state {
			t.Errorf("%s: job ended %v, want %v", name, job.GetState(), state)
		}
		for _, task := range job.GetTasks() {
			if reason != 0 && task.GetFailure().GetReason() != reason {
				t.Errorf("%s: task %s ended %v (%v: %s), want %v", name, task.GetId(), task.GetState(),
					task.GetFailure().GetReason(), task.GetFailure().GetMessage(), reason)
			}
		}
	}

	cutsBefore := proxy.Cuts()
	proxy.CutAfter(5 << 19) // 2.5 MiB: two and a half chunks a connection
	job, took := run("cuts:1", func(string) {})
	proxy.CutAfter(0)
	expect("connections cut after 2.5 MiB", job, imagefarmv1.JobState_JOB_STATE_SUCCEEDED, 0)
	t.Logf("connections cut every 2.5 MiB: job done in %v, %d connections cut", took, proxy.Cuts()-cutsBefore)

	proxy.SetLatency(200 * time.Millisecond)
	job, took = run("latency:1", func(string) {})
	proxy.SetLatency(0)
	expect("200 ms latency", job, imagefarmv1.JobState_JOB_STATE_SUCCEEDED, 0)
	t.Logf("200 ms latency: job done in %v", took)

	job, took = run("refused:1", func(string) {
		proxy.Refuse(true)
		time.Sleep(20 * time.Second)
		proxy.Refuse(false)
	})
	expect("refused for 20 s", job, imagefarmv1.JobState_JOB_STATE_SUCCEEDED, 0)
	t.Logf("storage refused 20 s mid-job: job done %v after it came back", took)

	t0 := time.Now()
	job, _ = run("gone:1", func(string) { proxy.Refuse(true) })
	gone := time.Since(t0)
	proxy.Refuse(false)
	expect("refused for good", job, imagefarmv1.JobState_JOB_STATE_FAILED, imagefarmv1.FailureReason_FAILURE_REASON_STORAGE_UNAVAILABLE)
	if gone > budget+30*time.Second {
		t.Errorf("storage gone for good: tasks failed %v later, the budget is %v", gone, budget)
	}
	t.Logf("storage gone for good: tasks FAILED STORAGE_UNAVAILABLE %v after it went (budget %v): %s", gone, budget, job.GetTasks()[0].GetFailure().GetMessage())

	for _, damage := range []struct {
		name string
		bad  func([]byte) []byte
	}{
		{"corrupted", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x40; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
	} {
		ref := damage.name + ":1"
		f.pushImage(ref, 16<<20)
		f.damageChunk(ref, 5, damage.bad)
		id := f.submit(drivesJob(ref, drives...))
		job := waitFinal(t, f, id)
		expect("chunk "+damage.name, job, imagefarmv1.JobState_JOB_STATE_FAILED, imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT)
		t.Logf("chunk %s in MinIO: tasks FAILED CHUNK_CORRUPT: %s", damage.name, job.GetTasks()[0].GetFailure().GetMessage())
	}
	t.Logf("%v", f.checkInvariants(jobs))
}

// damageChunk replaces chunk i of image ref in the store with bad(its bytes).
func (f *farm) damageChunk(ref string, i int, bad func([]byte) []byte) {
	f.t.Helper()
	ctx := context.Background()
	s, err := storage.Open(f.store, storage.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	cat, _ := catalog.New(s, catalog.Options{})
	r, _ := catalog.ParseRef(ref)
	m, _, err := cat.Manifest(ctx, r)
	if err != nil {
		f.t.Fatal(err)
	}
	key := fmt.Sprintf("chunks/%s/%s", m.Chunks[i].ID[:2], m.Chunks[i].ID) // DESIGN.md's layout
	rc, err := s.Open(ctx, key, 0, -1)
	if err != nil {
		f.t.Fatal(err)
	}
	good, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		f.t.Fatal(err)
	}
	b := bad(good)
	if err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		f.t.Fatal(err)
	}
}
