package state

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/page"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// seedJobs creates 25 jobs job-00 (oldest) to job-24: every third is
// RUNNING, every fifth is for the "dell" image, and job-07 has a task on
// node n7.
func seedJobs(t *testing.T, s *Store) {
	t.Helper()
	start := time.Now().Add(-time.Hour)
	for i := range 25 {
		j := testJob(fmt.Sprintf("job-%02d", i))
		j.CreateTime = timestamppb.New(start.Add(time.Duration(i) * time.Second))
		if i%3 == 0 {
			j.State = imagefarmv1.JobState_JOB_STATE_RUNNING
		}
		if i%5 == 0 {
			j.ImageRef, j.ManifestDigest = fmt.Sprintf("dell-7420:v%d", i), fmt.Sprintf("sha256:%064x", i)
		}
		createJob(t, s, j, testTask(j.GetId(), "t", fmt.Sprintf("n%d", i)))
	}
}

func TestListJobs(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	seedJobs(t, s)
	running := []imagefarmv1.JobState{imagefarmv1.JobState_JOB_STATE_RUNNING}
	tests := []struct {
		name string
		f    JobFilter
		want []string
	}{
		{"running", JobFilter{States: running}, ids(24, 21, 18, 15, 12, 9, 6, 3, 0)},
		{"image name", JobFilter{Image: "dell-7420"}, ids(20, 15, 10, 5, 0)},
		{"image ref", JobFilter{Image: "dell-7420:v10"}, ids(10)},
		{"digest", JobFilter{Image: fmt.Sprintf("sha256:%064x", 15)}, ids(15)},
		{"other name", JobFilter{Image: "dell"}, nil},
		{"node", JobFilter{NodeID: "n7"}, ids(7)},
		{"all filters", JobFilter{States: running, Image: "dell-7420", NodeID: "n15"}, ids(15)},
	}
	for _, tt := range tests {
		jobs, next, err := s.ListJobs(t.Context(), tt.f)
		if got := jobIDs(jobs); err != nil || next != "" || !slices.Equal(got, tt.want) {
			t.Errorf("%s: ListJobs(%+v) = %v, %q, %v; want %v", tt.name, tt.f, got, next, err, tt.want)
		}
	}
}

func TestListJobsPages(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	seedJobs(t, s)
	var all []string
	f := JobFilter{PageSize: 10}
	for page := 0; ; page++ {
		jobs, next, err := s.ListJobs(t.Context(), f)
		if err != nil {
			t.Fatalf("ListJobs(page %d) = %v", page, err)
		}
		all = append(all, jobIDs(jobs)...)
		if page == 0 {
			// A job submitted while the client pages must not shift pages.
			late := testJob("late")
			createJob(t, s, late)
		}
		if next == "" {
			break
		}
		f.PageToken = next
	}
	if want := ids(24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0); !slices.Equal(all, want) {
		t.Errorf("ListJobs pages = %v, want %v", all, want)
	}
	for _, token := range []string{"%%%", "bm90LWEtdG9rZW4", "MTIzL2EuYg"} { // garbage, "not-a-token", "123/a.b"
		if _, _, err := s.ListJobs(t.Context(), JobFilter{PageToken: token}); !errors.Is(err, page.ErrInvalidToken) {
			t.Errorf("ListJobs(token %q) = %v, want page.ErrInvalidToken", token, err)
		}
	}
}

// TestManyTasks checks that a job of 10,000 tasks reads back whole and
// quickly: listings are one stream pass, not a request per key.
func TestManyTasks(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 1000
	}
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	createJob(t, s, testJob("big"))
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			_, err := s.CreateTask(ctx, testTask("big", fmt.Sprintf("t%05d", i), "n1"))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	job, err := s.GetJob(t.Context(), "big")
	took := time.Since(begin)
	if err != nil || len(job.GetTasks()) != n || job.GetTaskCounts().GetQueued() != uint32(n) {
		t.Fatalf("GetJob(big) = %d tasks, %v; want %d", len(job.GetTasks()), err, n)
	}
	t.Logf("GetJob with %d tasks took %v", n, took)
	jobs, _, err := s.ListJobs(t.Context(), JobFilter{NodeID: "n1"})
	if err != nil || len(jobs) != 1 {
		t.Errorf("ListJobs(node n1) = %d jobs, %v; want 1", len(jobs), err)
	}
}

func ids(nums ...int) []string {
	var out []string
	for _, n := range nums {
		out = append(out, fmt.Sprintf("job-%02d", n))
	}
	return out
}

func jobIDs(jobs []*imagefarmv1.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.GetId())
	}
	return out
}
