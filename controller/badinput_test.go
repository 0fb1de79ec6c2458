package controller_test

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// maxMessage is the longest error message a client should get: a hostile
// megabyte-long field must not come back whole.
const maxMessage = 1024

func explicit(ids ...string) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: ids}}}
}

func order(n uint32, sel *imagefarmv1.Selector) *imagefarmv1.Targets {
	return &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{Count: n, Selector: sel}}}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m["k"+strconv.Itoa(i)] = "v"
	}
	return m
}

func manyStrings(n int, f func(int) string) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = f(i)
	}
	return s
}

// watchErr opens a watch and returns the error it ends with, or an
// OK status when an event arrives first.
func watchErr(ctx context.Context, f *farm.Farm, req *imagefarmv1.WatchJobRequest) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := f.API.WatchJob(ctx, req)
	if err != nil {
		return err
	}
	_, err = w.Recv()
	return err
}

// internalTag finds a package's sentinel text in a message ("scheduler: bad
// count"): the API turns them into what a person reads.
var internalTag = regexp.MustCompile(`(^|: )(scheduler|state|controller|tokens|catalog|storage|dispatch|audit|imagefarm-\w+): `)

// TestBadRequestsGetCodesAndMessages sends malformed and hostile requests to
// every method of the client API: each gets its code and a short message
// that names what was wrong, and the controller keeps serving.
func TestBadRequestsGetCodesAndMessages(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	tiny := usbDrive("tiny")
	tiny.SizeBytes = 4096
	sys := usbDrive("sys")
	sys.State, sys.Refusal = imagefarmv1.DriveState_DRIVE_STATE_REFUSED, &imagefarmv1.Failure{
		Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_SYSTEM_DISK, Message: "holds the root file system"}
	f.Connect(t, "n1", usbDrive("d1"), usbDrive("d2"), tiny, sys).Beat()
	small := usbDrive("small")
	small.SizeBytes = 4096
	f.Connect(t, "n2", small).Beat()
	busy, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")})
	if err != nil {
		t.Fatal(err)
	}
	jobID := busy.GetJob().GetId()

	mib := strings.Repeat("x", 1<<20)
	zeros := "sha256:" + strings.Repeat("0", 64)
	submit := func(ref string, targets *imagefarmv1.Targets) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.API.SubmitJob(ctx, &imagefarmv1.SubmitJobRequest{ImageRef: ref, Targets: targets})
			return err
		}
	}
	submitReq := func(req *imagefarmv1.SubmitJobRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := f.API.SubmitJob(ctx, req); return err }
	}
	getJob := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.API.GetJob(ctx, &imagefarmv1.GetJobRequest{JobId: id})
			return err
		}
	}
	cancelJob := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.API.CancelJob(ctx, &imagefarmv1.CancelJobRequest{JobId: id})
			return err
		}
	}
	listJobs := func(req *imagefarmv1.ListJobsRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := f.API.ListJobs(ctx, req); return err }
	}
	watch := func(id string, from uint64) func(context.Context) error {
		return func(ctx context.Context) error {
			return watchErr(ctx, f, &imagefarmv1.WatchJobRequest{JobId: id, FromRevision: from})
		}
	}
	listNodes := func(req *imagefarmv1.ListNodesRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := f.API.ListNodes(ctx, req); return err }
	}
	listDrives := func(req *imagefarmv1.ListDrivesRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := f.API.ListDrives(ctx, req); return err }
	}
	listImages := func(req *imagefarmv1.ListImagesRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := f.API.ListImages(ctx, req); return err }
	}
	getImage := func(ref string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.API.GetImage(ctx, &imagefarmv1.GetImageRequest{Ref: ref})
			return err
		}
	}
	sel := func(s *imagefarmv1.Selector) *imagefarmv1.ListDrivesRequest {
		return &imagefarmv1.ListDrivesRequest{Selector: s}
	}
	badRef := "use 1 to 128 ASCII letters"

	for _, tc := range []struct {
		name string
		call func(context.Context) error
		code codes.Code
		msg  string // in the message
	}{
		{"SubmitJob empty", submitReq(&imagefarmv1.SubmitJobRequest{}), codes.InvalidArgument, "name drives"},
		{"SubmitJob no targets", submit("img:1", nil), codes.InvalidArgument, "name drives"},
		{"SubmitJob empty drive list", submit("img:1", explicit()), codes.InvalidArgument, "no drives and no selector"},
		{"SubmitJob empty ref", submit("", explicit("n1/d2")), codes.InvalidArgument, "use NAME:VERSION"},
		{"SubmitJob 1 MiB ref", submit(mib, explicit("n1/d2")), codes.InvalidArgument, "is 1048576 bytes long, the limit is 257"},
		{"SubmitJob ref ../x:1", submit("../x:1", explicit("n1/d2")), codes.InvalidArgument, badRef},
		{"SubmitJob ref a/b:1", submit("a/b:1", explicit("n1/d2")), codes.InvalidArgument, badRef},
		{"SubmitJob ref x:..", submit("x:..", explicit("n1/d2")), codes.InvalidArgument, badRef},
		{"SubmitJob ref with NUL", submit("img\x00:1", explicit("n1/d2")), codes.InvalidArgument, badRef},
		{"SubmitJob ref %2e%2e", submit("%2e%2e:1", explicit("n1/d2")), codes.InvalidArgument, badRef},
		{"SubmitJob ref bad digest", submit("img@sha256:../../x", explicit("n1/d2")), codes.InvalidArgument, `digest "sha256:../../x" has '.'`},
		{"SubmitJob unknown image", submit("nope:1", explicit("n1/d2")), codes.NotFound, "nope:1"},
		{"SubmitJob unknown digest", submit("img@"+zeros, explicit("n1/d2")), codes.NotFound, zeros},
		{"SubmitJob 100k job labels", submitReq(&imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2"),
			Labels: manyLabels(100_000)}), codes.InvalidArgument, "100000 labels, the limit is 64"},
		{"SubmitJob 1 MiB job label", submitReq(&imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2"),
			Labels: map[string]string{"ticket": mib}}), codes.InvalidArgument, "is 1048576 bytes long"},
		{"SubmitJob job label with escape", submitReq(&imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2"),
			Labels: map[string]string{"ticket": "\x1b[2J"}}), codes.InvalidArgument, `has '\x1b'`},
		{"SubmitJob 1 MiB request id", submitReq(&imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2"),
			RequestId: mib}), codes.InvalidArgument, "is 1048576 bytes long, the limit is 128"},
		{"SubmitJob malformed drive", submit("img:1", explicit("n1")), codes.InvalidArgument, "want NODE/DRIVE"},
		{"SubmitJob drive n1/../x", submit("img:1", explicit("n1/../x")), codes.InvalidArgument, `drive id "../x" has '/'`},
		{"SubmitJob 1 MiB drive", submit("img:1", explicit("n1/"+mib)), codes.InvalidArgument, "is 1048576 bytes long, the limit is 255"},
		{"SubmitJob drive twice", submit("img:1", explicit("n1/d2", "n1/d2")), codes.InvalidArgument, "listed twice"},
		{"SubmitJob 100k+1 drives", submit("img:1", explicit(manyStrings(100_001, func(i int) string { return "n1/d" + strconv.Itoa(i) })...)),
			codes.InvalidArgument, "100001 drives listed, the limit is 100000"},
		{"SubmitJob unknown node", submit("img:1", explicit("n9/d1")), codes.NotFound, `no node "n9"`},
		{"SubmitJob unknown drive", submit("img:1", explicit("n1/zz")), codes.NotFound, `no drive "zz"`},
		{"SubmitJob busy drive", submit("img:1", explicit("n1/d1")), codes.FailedPrecondition, "is being written by task"},
		{"SubmitJob drive too small", submit("img:1", explicit("n1/tiny")), codes.FailedPrecondition, "the image needs"},
		{"SubmitJob refused drive", submit("img:1", explicit("n1/sys")), codes.FailedPrecondition, "holds the root file system"},
		{"SubmitJob count 0", submit("img:1", order(0, &imagefarmv1.Selector{})), codes.InvalidArgument, "count 0: a standing order writes 1 to 100000"},
		{"SubmitJob count 1<<31", submit("img:1", order(1<<31, &imagefarmv1.Selector{})), codes.InvalidArgument, "count 2147483648"},
		{"SubmitJob count max", submit("img:1", order(math.MaxUint32, nil)), codes.InvalidArgument, "count 4294967295"},
		{"SubmitJob min size 16 EiB", submit("img:1", order(1, &imagefarmv1.Selector{MinSizeBytes: math.MaxUint64})), codes.InvalidArgument, "larger than any drive"},
		{"SubmitJob 100k selector labels", submit("img:1", order(1, &imagefarmv1.Selector{Labels: manyLabels(100_000)})), codes.InvalidArgument, "100000 labels"},
		{"SubmitJob 1 MiB pool", submit("img:1", order(1, &imagefarmv1.Selector{Pool: mib})), codes.InvalidArgument, "is 1048576 bytes long"},
		{"SubmitJob selector node ../x", submit("img:1", order(1, &imagefarmv1.Selector{NodeIds: []string{"../x"}})), codes.InvalidArgument, `node id "../x"`},
		{"SubmitJob selector unknown node", submit("img:1", order(1, &imagefarmv1.Selector{NodeIds: []string{"n9"}})), codes.NotFound, `no node "n9"`},
		{"SubmitJob selector unknown pool", submit("img:1", order(1, &imagefarmv1.Selector{Pool: "nope"})), codes.NotFound, `no node is in pool "nope"`},
		{"SubmitJob selector no node", submit("img:1", order(1, &imagefarmv1.Selector{Labels: map[string]string{"site": "mars"}})), codes.NotFound, "no node has label site=mars"},
		{"SubmitJob selector only small drives", submit("img:1", order(1, &imagefarmv1.Selector{NodeIds: []string{"n2"}})), codes.FailedPrecondition, "insert larger drives"},
		{"SubmitJob over 4 MiB", submitReq(&imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2"),
			Labels: map[string]string{"blob": strings.Repeat("x", 5<<20)}}), codes.ResourceExhausted, "larger than max"},

		{"GetJob empty", getJob(""), codes.InvalidArgument, `id ""`},
		{"GetJob unknown", getJob("jnope"), codes.NotFound, `no job "jnope"`},
		{"GetJob ../../x", getJob("../../x"), codes.InvalidArgument, `id "../../x"`},
		{"GetJob wildcard", getJob("j.>"), codes.InvalidArgument, `id "j.>"`},
		{"GetJob NUL", getJob("j\x00"), codes.InvalidArgument, `id "j\x00"`},
		{"GetJob %2e%2e", getJob("%2e%2e"), codes.InvalidArgument, `id "%2e%2e"`},
		{"GetJob 1 MiB", getJob(mib), codes.InvalidArgument, "use 1 to 128 ASCII letters, digits, '_' or '-'"},

		{"ListJobs bad page token", listJobs(&imagefarmv1.ListJobsRequest{PageToken: "not-a-token"}), codes.InvalidArgument, "next_page_token"},
		{"ListJobs 1 MiB page token", listJobs(&imagefarmv1.ListJobsRequest{PageToken: mib}), codes.InvalidArgument, "next_page_token"},
		{"ListJobs negative page size", listJobs(&imagefarmv1.ListJobsRequest{PageSize: -1}), codes.InvalidArgument, "page_size -1"},
		{"ListJobs unknown state", listJobs(&imagefarmv1.ListJobsRequest{States: []imagefarmv1.JobState{999}}), codes.InvalidArgument, "states: 999 is not one of JOB_STATE_PENDING"},
		{"ListJobs unspecified state", listJobs(&imagefarmv1.ListJobsRequest{States: []imagefarmv1.JobState{0}}), codes.InvalidArgument, "states: 0 is not one of"},
		{"ListJobs node ../x", listJobs(&imagefarmv1.ListJobsRequest{NodeId: "../x"}), codes.InvalidArgument, `id "../x"`},
		{"ListJobs 1 MiB image", listJobs(&imagefarmv1.ListJobsRequest{Image: mib}), codes.InvalidArgument, "is 1048576 bytes long, the limit is 128"},

		{"WatchJob unknown job", watch("jnope", 0), codes.NotFound, `no job "jnope"`},
		{"WatchJob bad id", watch("../x", 0), codes.InvalidArgument, `id "../x"`},
		{"WatchJob 1 MiB id", watch(mib, 0), codes.InvalidArgument, "use 1 to 128 ASCII letters, digits, '_' or '-'"},
		{"WatchJob revision in the future", watch(jobID, 1<<40), codes.OutOfRange, "revision 1099511627776"},
		{"WatchJob all from max revision", watch("", math.MaxUint64), codes.OutOfRange, "revision 18446744073709551615"},

		{"CancelJob empty", cancelJob(""), codes.InvalidArgument, `id ""`},
		{"CancelJob unknown", cancelJob("jnope"), codes.NotFound, `no job "jnope"`},
		{"CancelJob ../x", cancelJob("../x"), codes.InvalidArgument, `id "../x"`},
		{"CancelJob 1 MiB", cancelJob(mib), codes.InvalidArgument, "use 1 to 128 ASCII letters, digits, '_' or '-'"},

		{"ListNodes 1 MiB pool", listNodes(&imagefarmv1.ListNodesRequest{Pool: mib}), codes.InvalidArgument, "pool"},
		{"ListNodes unknown state", listNodes(&imagefarmv1.ListNodesRequest{States: []imagefarmv1.NodeState{-3}}), codes.InvalidArgument, "states: -3 is not one of NODE_STATE_ONLINE"},

		{"ListDrives unknown state", listDrives(&imagefarmv1.ListDrivesRequest{States: []imagefarmv1.DriveState{42}}), codes.InvalidArgument, "states: 42 is not one of DRIVE_STATE_AVAILABLE"},
		{"ListDrives 100k labels", listDrives(sel(&imagefarmv1.Selector{Labels: manyLabels(100_000)})), codes.InvalidArgument, "100000 labels"},
		{"ListDrives 1 MiB pool", listDrives(sel(&imagefarmv1.Selector{Pool: mib})), codes.InvalidArgument, "is 1048576 bytes long"},
		{"ListDrives node ../x", listDrives(sel(&imagefarmv1.Selector{NodeIds: []string{"../x"}})), codes.InvalidArgument, `node id "../x"`},
		{"ListDrives min size 16 EiB", listDrives(sel(&imagefarmv1.Selector{MinSizeBytes: math.MaxUint64})), codes.InvalidArgument, "larger than any drive"},

		{"ListImages name ../x", listImages(&imagefarmv1.ListImagesRequest{Name: "../x"}), codes.InvalidArgument, `name "../x"`},
		{"ListImages 1 MiB name", listImages(&imagefarmv1.ListImagesRequest{Name: mib}), codes.InvalidArgument, "name"},
		{"ListImages unknown kind", listImages(&imagefarmv1.ListImagesRequest{Kind: 77}), codes.InvalidArgument, "kind: 77 is not one of IMAGE_KIND_DISK"},
		{"ListImages bad page token", listImages(&imagefarmv1.ListImagesRequest{PageToken: "-1"}), codes.InvalidArgument, "next_page_token"},
		{"ListImages page token past the end", listImages(&imagefarmv1.ListImagesRequest{PageToken: "99999"}), codes.InvalidArgument, "next_page_token"},
		{"ListImages 1 MiB page token", listImages(&imagefarmv1.ListImagesRequest{PageToken: mib}), codes.InvalidArgument, "next_page_token"},
		{"ListImages negative page size", listImages(&imagefarmv1.ListImagesRequest{PageSize: math.MinInt32}), codes.InvalidArgument, "page_size -2147483648"},

		{"GetImage empty", getImage(""), codes.InvalidArgument, "use NAME:VERSION"},
		{"GetImage ../x:1", getImage("../x:1"), codes.InvalidArgument, badRef},
		{"GetImage a/b:1", getImage("a/b:1"), codes.InvalidArgument, badRef},
		{"GetImage x:..", getImage("x:.."), codes.InvalidArgument, badRef},
		{"GetImage NUL", getImage("img:1\x00"), codes.InvalidArgument, badRef},
		{"GetImage %2e%2e", getImage("%2e%2e:1"), codes.InvalidArgument, badRef},
		{"GetImage 1 MiB", getImage(mib), codes.InvalidArgument, "is 1048576 bytes long, the limit is 257"},
		{"GetImage unknown", getImage("nope:1"), codes.NotFound, "nope:1"},
		{"GetImage unknown digest", getImage("img@" + zeros), codes.NotFound, zeros},
	} {
		err := tc.call(t.Context())
		msg := status.Convert(err).Message()
		if status.Code(err) != tc.code || !strings.Contains(msg, tc.msg) || len(msg) > maxMessage {
			t.Errorf("%s = %v (%.200q), want %v with %q in at most %d bytes", tc.name, status.Code(err), msg, tc.code, tc.msg, maxMessage)
		}
		if tag := internalTag.FindString(msg); tag != "" {
			t.Errorf("%s: message %.200q has the internal tag %q, want only what a person reads", tc.name, msg, tag)
		}
	}

	// The controller still serves, and still has the one job it accepted.
	jobs, err := f.API.ListJobs(t.Context(), &imagefarmv1.ListJobsRequest{})
	if err != nil || len(jobs.GetJobs()) != 1 || jobs.GetJobs()[0].GetId() != jobID {
		t.Errorf("ListJobs after bad requests = %v, %v; want only job %s", jobs.GetJobs(), err, jobID)
	}
	if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d2")}); err != nil {
		t.Errorf("SubmitJob after bad requests = %v", err)
	}
}

// TestFiltersThatMatchNothingAreEmpty checks that well-formed filters naming
// nothing the farm has return empty lists, not errors, and that a drive
// selector previews what a standing order would take.
func TestFiltersThatMatchNothingAreEmpty(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	f.Connect(t, "n1", usbDrive("d1"))
	for _, tc := range []struct {
		name string
		call func(context.Context) (int, error)
		want int
	}{
		{"ListDrives empty selector", func(ctx context.Context) (int, error) {
			r, err := f.API.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{Selector: &imagefarmv1.Selector{}})
			return len(r.GetDrives()), err
		}, 1},
		{"ListDrives unknown pool", func(ctx context.Context) (int, error) {
			r, err := f.API.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{Selector: &imagefarmv1.Selector{Pool: "nope"}})
			return len(r.GetDrives()), err
		}, 0},
		{"ListDrives unknown label", func(ctx context.Context) (int, error) {
			r, err := f.API.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{Selector: &imagefarmv1.Selector{Labels: map[string]string{"site": "mars"}}})
			return len(r.GetDrives()), err
		}, 0},
		{"ListDrives unknown node", func(ctx context.Context) (int, error) {
			r, err := f.API.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{Selector: &imagefarmv1.Selector{NodeIds: []string{"n9"}}})
			return len(r.GetDrives()), err
		}, 0},
		{"ListNodes unknown pool", func(ctx context.Context) (int, error) {
			r, err := f.API.ListNodes(ctx, &imagefarmv1.ListNodesRequest{Pool: "nope"})
			return len(r.GetNodes()), err
		}, 0},
		{"ListJobs unknown node", func(ctx context.Context) (int, error) {
			r, err := f.API.ListJobs(ctx, &imagefarmv1.ListJobsRequest{NodeId: "n9", PageSize: math.MaxInt32})
			return len(r.GetJobs()), err
		}, 0},
		{"ListImages unknown name", func(ctx context.Context) (int, error) {
			r, err := f.API.ListImages(ctx, &imagefarmv1.ListImagesRequest{Name: "nope", PageSize: math.MaxInt32})
			return len(r.GetImages()), err
		}, 0},
	} {
		if n, err := tc.call(t.Context()); err != nil || n != tc.want {
			t.Errorf("%s = %d items, %v; want %d", tc.name, n, err, tc.want)
		}
	}
}
