package controller

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// fuzzFarm is a small farm with a drive of every kind a submit can meet.
var fuzzFarm = scheduler.Farm{Nodes: []scheduler.Node{
	{ID: "n1", Pool: "bench", Labels: map[string]string{"site": "lab"}, State: imagefarmv1.NodeState_NODE_STATE_ONLINE, Drives: []scheduler.Drive{
		{ID: "d1", Size: 64 << 20, Removable: true}, {ID: "small", Size: 4096},
		{ID: "sys", Size: 64 << 20, Refused: "holds the root file system"}, {ID: "busy", Size: 64 << 20, TaskID: "j1_t1"}}},
	{ID: "n2", Pool: "rack", State: imagefarmv1.NodeState_NODE_STATE_LOST, Drives: []scheduler.Drive{{ID: "d1", Size: 64 << 20}}},
}}

// FuzzSubmitRequest runs the checks SubmitJob makes before it stores a job
// (checkSubmit, parseRef, toSchedJob, scheduler.ValidateSubmit) on arbitrary
// requests: none may panic, and every refusal must reach the client as a
// code it can act on, with a message short enough to read.
func FuzzSubmitRequest(f *testing.F) {
	f.Add("img:1", "ci-7", "ticket=IT-42", byte(1), "n1/d1,n1/small", uint32(0), "", "", uint64(0))
	f.Add("img:1", "", "site=lab", byte(2), "", uint32(3), "bench", "n1", uint64(1<<30))
	f.Add("../x:1", strings.Repeat("r", 300), "=", byte(2), "", uint32(1<<31), "nope", "../x", uint64(1<<63))
	f.Add("img@sha256:00", "", "k=\x1b", byte(0), "n1", uint32(0), "\xff", "n9", uint64(0))
	f.Add("img:1", "", "", byte(3), "", uint32(1), "", "", uint64(0))
	f.Add("a:b", "", "k=v", byte(1), "n1/d1,n1/d1,n2/d1,n1/sys,n1/busy,n1/zz,n9/d1,n1/", uint32(1), "", "", uint64(0))
	f.Fuzz(func(t *testing.T, ref, requestID, label string, kind byte, drives string, count uint32, pool, node string, minSize uint64) {
		req := &imagefarmv1.SubmitJobRequest{ImageRef: ref, RequestId: requestID}
		if k, v, ok := strings.Cut(label, "="); ok {
			req.Labels = map[string]string{k: v}
		}
		switch kind % 4 { // none, drives, a selector, a count without a selector
		case 1:
			req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: strings.Split(drives, ",")}}}
		case 2:
			sel := &imagefarmv1.Selector{Pool: pool, Labels: req.Labels, MinSizeBytes: minSize}
			if node != "" {
				sel.NodeIds = []string{node}
			}
			req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{Selector: sel, Count: count}}}
		case 3:
			req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{Count: count}}}
		}
		err := checkSubmit(req)
		if err == nil {
			_, err = parseRef(ref)
		}
		if err == nil {
			var sj scheduler.Job
			if sj, err = toSchedJob(&imagefarmv1.Job{Targets: req.GetTargets()}, 900_000); err == nil {
				err = scheduler.ValidateSubmit(sj, fuzzFarm)
			}
		}
		if err == nil {
			return
		}
		st := status.Convert(toStatus(err))
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition:
		default:
			t.Fatalf("submit %v refused with %v: %v", req, st.Code(), err)
		}
		if st.Message() == "" || len(st.Message()) > 4<<10 {
			t.Fatalf("submit %v refused with a message of %d bytes: %.300q", req, len(st.Message()), st.Message())
		}
	})
}
