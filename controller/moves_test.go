package controller_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestReportsTheTablesRefuseChangeNothing: a drive report in a state no
// drive is stored in, and a task's progress going back a phase, are moves
// the core's tables refuse (controller/core): each is dropped, the stream
// goes on and nothing changes; a Hello with such a drive is refused.
func TestReportsTheTablesRefuseChangeNothing(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	n1 := f.Connect(t, "n1", usbDrive("d1"))
	n1.Beat()
	sub, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: explicit("n1/d1")})
	if err != nil {
		t.Fatal(err)
	}
	a := n1.Assignment()
	n1.UntilAck(progress(a.GetTaskId(), a.GetEpoch(), imagefarmv1.TaskState_TASK_STATE_WRITING, 0, 1))
	before := farmState(t, f, sub.GetJob().GetId())
	inserted := func(state imagefarmv1.DriveState) *imagefarmv1.ConnectRequest {
		d := usbDrive("d1")
		d.State = state
		return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveInserted{DriveInserted: &imagefarmv1.DriveInserted{Drive: d}}}
	}
	for _, tc := range []struct {
		name string
		msg  *imagefarmv1.ConnectRequest
	}{
		{"progress back to fetching", progress(a.GetTaskId(), a.GetEpoch(), imagefarmv1.TaskState_TASK_STATE_FETCHING, 0, 1)},
		{"a drive in no state", inserted(imagefarmv1.DriveState_DRIVE_STATE_UNSPECIFIED)},
		{"a drive offline", inserted(imagefarmv1.DriveState_DRIVE_STATE_OFFLINE)},
		{"a drive in state 99", inserted(99)},
	} {
		if stops := n1.UntilAck(tc.msg); len(stops) > 0 {
			t.Errorf("%s: StopTask %v, want none", tc.name, stops[0])
		}
		if after := farmState(t, f, sub.GetJob().GetId()); !maps.Equal(after, before) {
			t.Errorf("%s changed the farm:\n%v\nwant\n%v", tc.name, after, before)
		}
	}

	for _, st := range []imagefarmv1.DriveState{imagefarmv1.DriveState_DRIVE_STATE_UNSPECIFIED, imagefarmv1.DriveState_DRIVE_STATE_OFFLINE, 99} {
		d := usbDrive("d1")
		d.State = st
		err := connectErr(t, f, &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_Hello{Hello: &imagefarmv1.Hello{NodeId: "h1",
			Drives: []*imagefarmv1.Drive{d}}}})
		if msg := status.Convert(err).Message(); status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "AVAILABLE, BUSY or REFUSED") {
			t.Errorf("Hello with a drive in %v ended with %v (%q), want InvalidArgument naming the states a drive is reported in", st, status.Code(err), msg)
		}
	}
}
