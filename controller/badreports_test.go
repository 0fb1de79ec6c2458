package controller_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

func progress(id string, epoch uint64, state imagefarmv1.TaskState, done, total uint64) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskProgress{TaskProgress: &imagefarmv1.TaskProgress{
		TaskId: id, Epoch: epoch, State: state, BytesDone: done, BytesTotal: total}}}
}

func result(r *imagefarmv1.TaskResult) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskResult{TaskResult: r}}
}

func removed(id string) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveRemoved{DriveRemoved: &imagefarmv1.DriveRemoved{DriveId: id}}}
}

func hello(nodeID string) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: &imagefarmv1.Hello{NodeId: nodeID, InstanceId: "i-" + nodeID}}}
}

// farmState is what the tests watch for change: every task of a job, live
// progress included, and every drive of the farm.
func farmState(t *testing.T, f *farm.Farm, jobID string) map[string]string {
	t.Helper()
	job, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: jobID})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tk := range job.GetJob().GetTasks() {
		out[tk.GetId()] = fmt.Sprintf("%s %v epoch %d bytes %d/%d digest %q", tk.GetNodeId(), tk.GetState(), tk.GetEpoch(),
			tk.GetBytesDone(), tk.GetBytesTotal(), tk.GetVerifiedDigest())
	}
	drives, err := f.API.ListDrives(t.Context(), &imagefarmv1.ListDrivesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drives.GetDrives() {
		out[d.GetNodeId()+"/"+d.GetId()] = fmt.Sprintf("%v task %s", d.GetState(), d.GetTaskId())
	}
	return out
}

// TestReportsOnTasksNotHeldChangeNothing sends, as node n1, reports on tasks
// it does not hold and reports that cannot be true: each is refused with a
// StopTask or dropped, and no task or drive changes, n2's least of all.
func TestReportsOnTasksNotHeldChangeNothing(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	n1 := f.Connect(t, "n1", usbDrive("d1"))
	n2 := f.Connect(t, "n2", usbDrive("d2"))
	n1.Beat()
	n2.Beat()
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1", "n2/d2")})
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := n1.Assignment(), n2.Assignment()
	id, epoch := mine.GetTaskId(), mine.GetEpoch()
	writing := imagefarmv1.TaskState_TASK_STATE_WRITING
	done := func(id string, epoch uint64) *imagefarmv1.ConnectRequest {
		return result(&imagefarmv1.TaskResult{TaskId: id, Epoch: epoch, State: imagefarmv1.TaskState_TASK_STATE_DONE, VerifiedDigest: f.Digest})
	}
	unknown, stale := imagefarmv1.StopReason_STOP_REASON_UNKNOWN_TASK, imagefarmv1.StopReason_STOP_REASON_STALE_EPOCH
	before := farmState(t, f, sub.GetJob().GetId())

	for _, tc := range []struct {
		name string
		msg  *imagefarmv1.ConnectRequest
		stop imagefarmv1.StopReason // of the StopTask expected; unspecified for none
	}{
		{"progress for an unknown task", progress("jnope_tnope", epoch, writing, 0, 1), unknown},
		{"result for an unknown task", done("jnope_tnope", epoch), unknown},
		{"result for task ../x", done("../x", epoch), unknown},
		{"result for task 1 MiB long", done(strings.Repeat("j", 1<<20), epoch), unknown},
		{"result with no task id", done("", epoch), unknown},
		{"progress for n2's task", progress(theirs.GetTaskId(), theirs.GetEpoch(), writing, 0, 1), unknown},
		{"result for n2's task", done(theirs.GetTaskId(), theirs.GetEpoch()), unknown},
		{"result with a stale epoch", done(id, epoch-1), stale},
		{"progress with a future epoch", progress(id, epoch+1, writing, 0, 1), stale},
		{"removal of an unknown drive", removed("zz"), 0},
		{"removal of n2's drive", removed("d2"), 0},
		{"removal of a drive without id", removed(""), 0},
		{"removal of a drive 1 MiB long", removed(strings.Repeat("d", 1<<20)), 0},
		{"insertion of no drive", &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveInserted{DriveInserted: &imagefarmv1.DriveInserted{}}}, 0},
		{"progress past its total", progress(id, epoch, writing, 2, 1), 0},
		{"progress larger than the drive", progress(id, epoch, writing, 0, 1<<62), 0},
		{"progress in no state", progress(id, epoch, imagefarmv1.TaskState_TASK_STATE_UNSPECIFIED, 0, 1), 0},
		{"progress back to queued", progress(id, epoch, imagefarmv1.TaskState_TASK_STATE_QUEUED, 0, 1), 0},
		{"progress in state 999", progress(id, epoch, 999, 0, 1), 0},
		{"progress in a final state", progress(id, epoch, imagefarmv1.TaskState_TASK_STATE_DONE, 1, 1), 0},
	} {
		stops := n1.UntilAck(tc.msg)
		switch {
		case tc.stop == 0 && len(stops) > 0:
			t.Errorf("%s: StopTask %v, want none", tc.name, stops[0])
		case tc.stop != 0 && (len(stops) != 1 || stops[0].GetReason() != tc.stop):
			t.Errorf("%s: StopTasks %v, want one with %v", tc.name, stops, tc.stop)
		}
		if after := farmState(t, f, sub.GetJob().GetId()); !maps.Equal(after, before) {
			t.Errorf("%s changed the farm:\n%v\nwant\n%v", tc.name, after, before)
		}
	}
}

// TestResultsThatCannotBeTrueFailTheirTask checks that a result from the
// node holding a task, but impossible for it, ends the task FAILED with a
// message saying why, and that nothing absurd is recorded.
func TestResultsThatCannotBeTrueFailTheirTask(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	im := f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"), usbDrive("d3"), usbDrive("d4"))
	im.Beat()
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1", "n1/d2", "n1/d3", "n1/d4")})
	if err != nil {
		t.Fatal(err)
	}
	done := imagefarmv1.TaskState_TASK_STATE_DONE
	for _, tc := range []struct {
		name  string
		r     *imagefarmv1.TaskResult
		state imagefarmv1.TaskState
		msg   string // in the failure's message
	}{
		{"another image's digest", &imagefarmv1.TaskResult{State: done, VerifiedDigest: "sha256:" + strings.Repeat("f", 64)},
			imagefarmv1.TaskState_TASK_STATE_FAILED, "not the job's image"},
		{"more bytes than the image", &imagefarmv1.TaskResult{State: done, VerifiedDigest: f.Digest, BytesWritten: 1 << 40},
			imagefarmv1.TaskState_TASK_STATE_FAILED, "1099511627776 bytes written of a 900000-byte image"},
		{"a state that is no end", &imagefarmv1.TaskResult{State: imagefarmv1.TaskState_TASK_STATE_WRITING},
			imagefarmv1.TaskState_TASK_STATE_FAILED, "a result in state TASK_STATE_WRITING"},
		{"a negative duration", &imagefarmv1.TaskResult{State: done, VerifiedDigest: f.Digest, BytesWritten: 900000,
			Duration: durationpb.New(-time.Hour)}, done, ""},
	} {
		a := im.Assignment()
		tc.r.TaskId, tc.r.Epoch = a.GetTaskId(), a.GetEpoch()
		im.UntilAck(result(tc.r))
		job, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: sub.GetJob().GetId()})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range job.GetJob().GetTasks() {
			if tk.GetId() != a.GetTaskId() {
				continue
			}
			if tk.GetState() != tc.state || !strings.Contains(tk.GetFailure().GetMessage(), tc.msg) || tk.GetBytesPerSecond() != 0 {
				t.Errorf("%s: task %v, %.200q, %d B/s; want %v with %q and no rate", tc.name, tk.GetState(), tk.GetFailure().GetMessage(),
					tk.GetBytesPerSecond(), tc.state, tc.msg)
			}
			if tc.state != done && tk.GetVerifiedDigest() != "" {
				t.Errorf("%s: a failed task verified %q", tc.name, tk.GetVerifiedDigest())
			}
		}
	}
	waitJob(t, f, sub.GetJob().GetId(), imagefarmv1.JobState_JOB_STATE_PARTIAL)
}

// TestImagerStreamsThatBreakTheProtocolEnd checks the messages that end an
// imager's stream: each gets InvalidArgument with a short message saying
// what was wrong, and stores nothing of the bad Hello.
func TestImagerStreamsThatBreakTheProtocolEnd(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	mib := strings.Repeat("x", 1<<20)
	withHello := func(h *imagefarmv1.Hello) *imagefarmv1.ConnectRequest {
		return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: h}}
	}
	for _, tc := range []struct {
		name string
		msgs []*imagefarmv1.ConnectRequest
		msg  string // in the status message
	}{
		{"an empty message first", []*imagefarmv1.ConnectRequest{{}}, "must be Hello"},
		{"a report before Hello", []*imagefarmv1.ConnectRequest{result(&imagefarmv1.TaskResult{TaskId: "j1_t1"})}, "must be Hello"},
		{"a heartbeat before Hello", []*imagefarmv1.ConnectRequest{{Body: &imagefarmv1.ConnectRequest_Heartbeat{}}}, "must be Hello"},
		{"Hello without a node id", []*imagefarmv1.ConnectRequest{hello("")}, `node id ""`},
		{"Hello from node ../x", []*imagefarmv1.ConnectRequest{hello("../x")}, `node id "../x"`},
		{"Hello from a node id 1 MiB long", []*imagefarmv1.ConnectRequest{hello(mib)}, "node id"},
		{"Hello with a drive without id", []*imagefarmv1.ConnectRequest{withHello(&imagefarmv1.Hello{NodeId: "h1",
			Drives: []*imagefarmv1.Drive{{SizeBytes: 1}}})}, `drive id ""`},
		{"Hello with a pool 1 MiB long", []*imagefarmv1.ConnectRequest{withHello(&imagefarmv1.Hello{NodeId: "h2", Pool: mib})}, "pool"},
		{"Hello with 100k labels", []*imagefarmv1.ConnectRequest{withHello(&imagefarmv1.Hello{NodeId: "h3", Labels: manyLabels(100_000)})},
			"100000 labels, the limit is 64"},
		{"a second Hello for another node", []*imagefarmv1.ConnectRequest{hello("p1"), hello("n9")}, `a second Hello, for node "n9"`},
		{"a second Hello for the same node", []*imagefarmv1.ConnectRequest{hello("p2"), hello("p2")}, "a second Hello"},
	} {
		err := connectErr(t, f, tc.msgs...)
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, tc.msg) || len(msg) > maxMessage {
			t.Errorf("%s: stream ended with %v (%.200q), want InvalidArgument with %q in at most %d bytes",
				tc.name, status.Code(err), msg, tc.msg, maxMessage)
		}
	}
	nodes, err := f.API.ListNodes(t.Context(), &imagefarmv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range nodes.GetNodes() {
		ids = append(ids, n.GetId())
	}
	if strings.Join(ids, " ") != "p1 p2" {
		t.Errorf("nodes %v after bad Hellos, want only p1 and p2 of the good first ones", ids)
	}
}

// connectErr opens an imager stream, sends msgs and returns the error the
// stream ends with. The stream has the certificate of the node of the
// first message's Hello, so that its flaws are what is refused, or of
// node x when that cannot be certified.
func connectErr(t *testing.T, f *farm.Farm, msgs ...*imagefarmv1.ConnectRequest) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	node := msgs[0].GetHello().GetNodeId()
	if ident.NodeID(node) != nil {
		node = "x"
	}
	stream, err := f.ImagerClient(t, node).Connect(ctx)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if stream.Send(m) != nil {
			break // the stream ended; Recv says why
		}
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}
