package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func TestNodes(t *testing.T) {
	f := &fakeAPI{nodes: []*imagefarmv1.Node{
		{Id: "bench-1", Pool: "usb-bench", State: imagefarmv1.NodeState_NODE_STATE_ONLINE, DriveCount: 16, BusyDriveCount: 3,
			LastHeartbeatTime: timestamppb.New(time.Now().Add(-3 * time.Second)), Version: "v0.4.0"},
		{Id: "bench-2", Pool: "usb-bench", State: imagefarmv1.NodeState_NODE_STATE_LOST, DriveCount: 8,
			LastHeartbeatTime: timestamppb.New(time.Now().Add(-2 * time.Hour)), Version: "v0.3.9"},
	}}
	addr := serveFakeAPI(t, f)
	out, err := runFarm(t, addr, "nodes", "--pool", "usb-bench", "--state", "online,lost")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{`(?m)^ID\s+POOL\s+STATE\s+DRIVES\s+LAST HEARTBEAT\s+VERSION$`,
		`bench-1\s+usb-bench\s+ONLINE\s+16 \(3 busy\)\s+\d+ seconds ago\s+v0\.4\.0`,
		`bench-2\s+usb-bench\s+LOST\s+8 \(0 busy\)\s+2 hours ago\s+v0\.3\.9`} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Errorf("nodes lacks a row matching %q:\n%s", row, out)
		}
	}
	if r := f.nodeReq[0]; r.GetPool() != "usb-bench" || len(r.GetStates()) != 2 || r.GetStates()[1] != imagefarmv1.NodeState_NODE_STATE_LOST {
		t.Errorf("nodes sent %v, want pool usb-bench and states online, lost", r)
	}
	out, err = runFarm(t, addr, "nodes", "--json")
	var got []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || got[0]["busy_drive_count"] != 3.0 || got[1]["state"] != "NODE_STATE_LOST" {
		t.Errorf("nodes --json = %v:\n%s", err, out)
	}
}

// TestFarmDrives lists the farm's drives: a refused drive's reason, however
// long, goes under its row and leaves the columns as narrow as the others
// need.
func TestFarmDrives(t *testing.T) {
	long := "refused: system: system disk: holds / (on /dev/vda), /boot (on /dev/vda); cache: holds the node cache /var/cache/imagefarm (on /dev/vda); " +
		"mounted: /dev/vda is mounted on /; policy: virtio disk, not removable or USB"
	f := &fakeAPI{drives: []*imagefarmv1.Drive{
		{Id: "SER1", NodeId: "bench-1", SizeBytes: 16 << 30, Transport: imagefarmv1.Transport_TRANSPORT_USB,
			Slot: "pci-0000:00:14.0-usb-0:3.2:1.0-scsi-0:0:0:0", SlotLabel: "bench 1, port 12", State: imagefarmv1.DriveState_DRIVE_STATE_BUSY, TaskId: "t7"},
		{Id: "SER2", NodeId: "bench-1", SizeBytes: 500 << 30, Transport: imagefarmv1.Transport_TRANSPORT_SATA, Slot: "pci-0000:00:17.0-ata-1",
			State: imagefarmv1.DriveState_DRIVE_STATE_REFUSED, Refusal: &imagefarmv1.Failure{
				Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_SYSTEM_DISK, Message: long}},
		{Id: "SER3", NodeId: "bench-1", SizeBytes: 8 << 30, Transport: imagefarmv1.Transport_TRANSPORT_USB, State: imagefarmv1.DriveState_DRIVE_STATE_AVAILABLE,
			LastTaskId: "j1_t3"},
		{Id: "SER4", NodeId: "bench-2", SizeBytes: 8 << 30, Transport: imagefarmv1.Transport_TRANSPORT_USB, State: imagefarmv1.DriveState_DRIVE_STATE_REFUSED,
			Refusal: &imagefarmv1.Failure{Message: "read-only\x1b[2J\nSER5\tforged row"}},
	}}
	addr := serveFakeAPI(t, f)
	out, err := runFarm(t, addr, "drives")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{`(?m)^NODE\s+DRIVE\s+SLOT/LABEL\s+SIZE\s+TRANSPORT\s+STATE\s+TASK$`,
		`(?m)^bench-1\s+SER1\s+bench 1, port 12\s+16 GiB\s+USB\s+BUSY\s+t7$`,
		`(?m)^bench-1\s+SER2\s+pci-0000:00:17.0-ata-1\s+500 GiB\s+SATA\s+REFUSED\s+-\n    ` + regexp.QuoteMeta(long) + `\n`,
		`(?m)^bench-1\s+SER3\s+-\s+8.0 GiB\s+USB\s+AVAILABLE\s+last j1_t3$`,
		`(?m)^bench-2\s+SER4\s+-\s+8.0 GiB\s+USB\s+REFUSED\s+-\n    read-only \[2J SER5 forged row\n`} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Errorf("drives lacks a row matching %q:\n%s", row, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 100 && !strings.Contains(line, long) {
			t.Errorf("drives has a row %d characters wide, want the refusal out of the columns:\n%s", len(line), out)
		}
	}
	out, err = runFarm(t, addr, "drives", "--json")
	var got []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 4 || got[0]["task_id"] != "t7" || got[1]["size_bytes"] != "536870912000" {
		t.Errorf("drives --json = %v:\n%s", err, out)
	}
	if out, err := runFarm(t, serveFakeAPI(t, &fakeAPI{}), "drives"); err != nil || out != "no drives\n" {
		t.Errorf("drives of an empty farm = %v, %q, want no drives", err, out)
	}
}
