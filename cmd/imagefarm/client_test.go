package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// fakeAPI is a small ImageFarmService for testing the CLI's own logic
// over a real gRPC connection: it records requests, returns canned jobs,
// nodes and drives, and streams canned events.
type fakeAPI struct {
	imagefarmv1.UnimplementedImageFarmServiceServer

	mu sync.Mutex
	// Requests, as they arrived.
	submits []*imagefarmv1.SubmitJobRequest
	watches []*imagefarmv1.WatchJobRequest
	lists   []*imagefarmv1.ListJobsRequest
	nodeReq []*imagefarmv1.ListNodesRequest
	gets    int

	// submitFailures is how many SubmitJobs fail with UNAVAILABLE first.
	submitFailures int
	// jobs are what GetJob returns: the nth call gets jobs[n], the last
	// one from then on. SubmitJob and CancelJob return jobs[0].
	jobs []*imagefarmv1.Job
	// pages are what successive ListJobs calls return.
	pages [][]*imagefarmv1.Job
	// events are the job's events, in order; WatchJob sends those at or
	// after from_revision (progress events carry the previous stored
	// revision, so they are not replayed).
	events []*imagefarmv1.JobEvent
	// dropAfter[n] is how many events the nth WatchJob sends before it
	// fails with UNAVAILABLE; calls past its end do not fail.
	dropAfter []int
	// outOfRange makes the first WatchJob fail with OUT_OF_RANGE, as for
	// a revision the event stream no longer keeps.
	outOfRange bool
	// hang makes WatchJob wait for the client to go away after its events.
	hang bool
	// overlap makes a resumed WatchJob send the stored events of this many
	// revisions before from_revision again, as a careless server might.
	overlap uint64
	nodes   []*imagefarmv1.Node
	drives  []*imagefarmv1.Drive
}

// serveFakeAPI serves f on a loopback port and returns its address.
func serveFakeAPI(t *testing.T, f imagefarmv1.ImageFarmServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	imagefarmv1.RegisterImageFarmServiceServer(srv, f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

func (f *fakeAPI) SubmitJob(_ context.Context, req *imagefarmv1.SubmitJobRequest) (*imagefarmv1.SubmitJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits = append(f.submits, req)
	if f.submitFailures > 0 {
		f.submitFailures--
		return nil, status.Error(codes.Unavailable, "controller starting")
	}
	return &imagefarmv1.SubmitJobResponse{Job: f.jobs[0]}, nil
}

func (f *fakeAPI) GetJob(_ context.Context, req *imagefarmv1.GetJobRequest) (*imagefarmv1.GetJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.jobs) == 0 || req.GetJobId() != f.jobs[0].GetId() {
		return nil, status.Errorf(codes.NotFound, "no job %q: list jobs with imagefarm job ls", req.GetJobId())
	}
	job := f.jobs[min(f.gets, len(f.jobs)-1)]
	f.gets++
	return &imagefarmv1.GetJobResponse{Job: job}, nil
}

func (f *fakeAPI) ListJobs(_ context.Context, req *imagefarmv1.ListJobsRequest) (*imagefarmv1.ListJobsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, req)
	page := len(f.lists) - 1
	resp := &imagefarmv1.ListJobsResponse{Jobs: f.pages[page]}
	if page+1 < len(f.pages) {
		resp.NextPageToken = fmt.Sprint(page + 1)
	}
	return resp, nil
}

func (f *fakeAPI) WatchJob(req *imagefarmv1.WatchJobRequest, stream grpc.ServerStreamingServer[imagefarmv1.WatchJobResponse]) error {
	f.mu.Lock()
	call := len(f.watches)
	f.watches = append(f.watches, req)
	drop := -1
	if call < len(f.dropAfter) {
		drop = f.dropAfter[call]
	}
	if call == 0 && f.outOfRange {
		f.mu.Unlock()
		return status.Errorf(codes.OutOfRange, "revision %d is older than the events kept", req.GetFromRevision())
	}
	from, storedFrom := req.GetFromRevision(), req.GetFromRevision()
	if call > 0 {
		storedFrom -= min(f.overlap, storedFrom)
	}
	f.mu.Unlock()
	sent := 0
	for _, ev := range f.events {
		progress := ev.GetKind() == imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS
		if ev.GetRevision() < from && (progress || ev.GetRevision() < storedFrom) {
			continue
		}
		if sent == drop {
			return status.Error(codes.Unavailable, "controller restarting")
		}
		if err := stream.Send(&imagefarmv1.WatchJobResponse{Event: ev}); err != nil {
			return err
		}
		sent++
	}
	if f.hang {
		<-stream.Context().Done()
	}
	return nil
}

func (f *fakeAPI) CancelJob(_ context.Context, req *imagefarmv1.CancelJobRequest) (*imagefarmv1.CancelJobResponse, error) {
	if req.GetJobId() != f.jobs[0].GetId() {
		return nil, status.Errorf(codes.NotFound, "no job %q: list jobs with imagefarm job ls", req.GetJobId())
	}
	return &imagefarmv1.CancelJobResponse{Job: f.jobs[0]}, nil
}

func (f *fakeAPI) ListNodes(_ context.Context, req *imagefarmv1.ListNodesRequest) (*imagefarmv1.ListNodesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodeReq = append(f.nodeReq, req)
	return &imagefarmv1.ListNodesResponse{Nodes: f.nodes}, nil
}

func (f *fakeAPI) ListDrives(context.Context, *imagefarmv1.ListDrivesRequest) (*imagefarmv1.ListDrivesResponse, error) {
	return &imagefarmv1.ListDrivesResponse{Drives: f.drives}, nil
}

// runFarm runs imagefarm's farm commands in-process against the controller
// at addr and returns what they printed on stdout and their error; what
// they said on stderr goes to the test log.
func runFarm(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	out, stderr, err := runFarmContext(t.Context(), addr, args...)
	if stderr != "" {
		t.Logf("imagefarm %s: stderr:\n%s", strings.Join(args, " "), stderr)
	}
	return out, err
}

// runFarmContext is runFarm with a context, and stderr returned.
func runFarmContext(ctx context.Context, addr string, args ...string) (stdout, stderr string, err error) {
	// The fake farms serve plaintext, for the CLI's own logic; tls_test.go
	// checks its TLS.
	g := &globals{controller: addr, tls: tlsFlags{insecure: true}}
	root := &cobra.Command{Use: "imagefarm", SilenceUsage: true, SilenceErrors: true}
	// drives stands in for imagefarm drives, which calls printFarmDrives
	// when a controller is given.
	drives := &cobra.Command{Use: "drives", RunE: func(cmd *cobra.Command, _ []string) error { return printFarmDrives(cmd, g) }}
	drives.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	root.AddCommand(newJobCmd(g), newNodesCmd(g), drives)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

var testTime = timestamppb.New(time.Date(2025, 3, 14, 9, 26, 0, 0, time.UTC))

func TestControllerErrors(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("127.0.0.1:%d", port)
	addr := serveFakeAPI(t, &fakeAPI{jobs: []*imagefarmv1.Job{{Id: "j1"}}})
	for _, tc := range []struct {
		addr string
		args []string
		want string
	}{
		{down, []string{"job", "ls"}, "controller " + down + " unavailable"},
		{down, []string{"nodes"}, down},
		{down, []string{"job", "watch", "j1"}, down},
		{down, []string{"drives"}, down},
		{"", []string{"job", "cancel", "j1"}, "IMAGEFARM_CONTROLLER"},
		// The controller's message is shown as it is, with no gRPC dressing.
		{addr, []string{"job", "cancel", "j9"}, `no job "j9": list jobs with imagefarm job ls`},
		{addr, []string{"job", "watch", "j9"}, `no job "j9"`},
		{addr, []string{"job", "ls", "--state", "bogus"}, "--state \"bogus\": want one of pending, running, succeeded, partial, failed, canceled"},
		{addr, []string{"nodes", "--state", "gone"}, "want one of online, lost, draining"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel() // an unreachable controller takes gRPC's retries to give up on
			out, err := runFarm(t, tc.addr, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "rpc error") || strings.Contains(err.Error(), "retries") {
				t.Errorf("imagefarm %q against %q = %v (%s), want an error containing %q", tc.args, tc.addr, err, out, tc.want)
			}
			var exit exitError
			if errors.As(err, &exit) {
				t.Errorf("imagefarm %q = exitError %v, want an error main prints", tc.args, err)
			}
		})
	}
}

func TestEnumNames(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want imagefarmv1.JobState
	}{
		{"running", imagefarmv1.JobState_JOB_STATE_RUNNING},
		{"FAILED", imagefarmv1.JobState_JOB_STATE_FAILED},
		{"job_state_canceled", imagefarmv1.JobState_JOB_STATE_CANCELED},
	} {
		got, err := parseEnums[imagefarmv1.JobState]("state", imagefarmv1.JobState(0).Descriptor(), []string{tc.in})
		if err != nil || got[0] != tc.want {
			t.Errorf("parseEnums(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
		if name := enumName(tc.want); name != strings.ToUpper(strings.TrimPrefix(strings.ToLower(tc.in), "job_state_")) {
			t.Errorf("enumName(%v) = %q", tc.want, name)
		}
	}
	if _, err := parseEnums[imagefarmv1.JobState]("state", imagefarmv1.JobState(0).Descriptor(), []string{"unspecified"}); err == nil {
		t.Errorf("parseEnums(unspecified) = nil error, want one: it is never sent on purpose")
	}
}
