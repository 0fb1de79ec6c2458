package state

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func TestNodes(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	for _, n := range []struct {
		id, pool string
		state    imagefarmv1.NodeState
	}{
		{"bench-2", "usb", imagefarmv1.NodeState_NODE_STATE_ONLINE},
		{"bench-1", "usb", imagefarmv1.NodeState_NODE_STATE_LOST},
		{"dock-1", "dock", imagefarmv1.NodeState_NODE_STATE_ONLINE},
	} {
		got, err := s.UpdateNode(ctx, n.id, func(node *imagefarmv1.Node) error {
			node.Pool, node.State = n.pool, n.state
			return nil
		})
		if err != nil || got.GetId() != n.id {
			t.Fatalf("UpdateNode(%s) = %v, %v", n.id, got, err)
		}
	}
	// A hello from a restarted imager raises the epoch of the stored node.
	n, err := s.UpdateNode(ctx, "bench-1", func(node *imagefarmv1.Node) error { node.Epoch++; return nil })
	if err != nil || n.GetEpoch() != 1 || n.GetPool() != "usb" {
		t.Errorf("UpdateNode(existing) = %v, %v; want epoch 1, pool kept", n, err)
	}
	tests := []struct {
		f    NodeFilter
		want string
	}{
		{NodeFilter{}, "[bench-1 bench-2 dock-1]"},
		{NodeFilter{Pool: "usb"}, "[bench-1 bench-2]"},
		{NodeFilter{States: []imagefarmv1.NodeState{imagefarmv1.NodeState_NODE_STATE_ONLINE}}, "[bench-2 dock-1]"},
		{NodeFilter{Pool: "dock", States: []imagefarmv1.NodeState{imagefarmv1.NodeState_NODE_STATE_LOST}}, "[]"},
	}
	for _, tt := range tests {
		nodes, err := s.ListNodes(ctx, tt.f)
		var ids []string
		for _, n := range nodes {
			ids = append(ids, n.GetId())
		}
		if got := fmt.Sprint(ids); err != nil || got != tt.want {
			t.Errorf("ListNodes(%+v) = %s, %v; want %s", tt.f, got, err, tt.want)
		}
	}
}

func TestDrives(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	// Drive ids hold what serials, WWNs and file names hold, '.' and ':'
	// included; a key token must not, so they are encoded.
	drives := []struct{ node, id, slot string }{
		{"n2", "disk.img", "a"},
		{"n1", "wwn-0x5000c500a1b2.c3d4", "b"},
		{"n1", "usb-Generic_Flash_Disk_1234:0", "a"},
		{"n1", "virt-odd:name.img", "c"},
	}
	for _, d := range drives {
		got, err := s.UpdateDrive(ctx, d.node, d.id, func(drive *imagefarmv1.Drive) error {
			drive.Slot = d.slot
			return nil
		})
		if err != nil || got.GetId() != d.id || got.GetNodeId() != d.node {
			t.Fatalf("UpdateDrive(%s, %q) = %v, %v", d.node, d.id, got, err)
		}
	}
	list := func(node string) string {
		t.Helper()
		ds, err := s.ListDrives(ctx, node)
		if err != nil {
			t.Fatalf("ListDrives(%q) = %v", node, err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.GetNodeId()+"/"+d.GetId())
		}
		return strings.Join(out, ",")
	}
	if got, want := list("n1"), "n1/usb-Generic_Flash_Disk_1234:0,n1/wwn-0x5000c500a1b2.c3d4,n1/virt-odd:name.img"; got != want {
		t.Errorf("ListDrives(n1) = %s, want %s (by slot)", got, want)
	}
	if got := list(""); !strings.HasSuffix(got, ",n2/disk.img") || strings.Count(got, ",") != 3 {
		t.Errorf("ListDrives(all) = %s, want n1's three then n2's", got)
	}
	if err := s.DeleteDrive(ctx, "n1", "wwn-0x5000c500a1b2.c3d4"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDrive(ctx, "n1", "wwn-0x5000c500a1b2.c3d4"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetDrive(deleted) = %v, want ErrNotFound", err)
	}
	if got := list("n1"); strings.Contains(got, "wwn") {
		t.Errorf("ListDrives(n1) after delete = %s", got)
	}
	// Freeing the claim of a drive pulled meanwhile does not bring it back.
	if _, err := s.UpdateDriveIfStored(ctx, "n1", "wwn-0x5000c500a1b2.c3d4", func(*imagefarmv1.Drive) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateDriveIfStored(deleted drive) = %v, want ErrNotFound", err)
	}
	if got := list("n1"); strings.Contains(got, "wwn") {
		t.Errorf("ListDrives(n1) after UpdateDriveIfStored of a deleted drive = %s", got)
	}
	// A drive re-inserted after deletion is stored again.
	if _, err := s.UpdateDrive(ctx, "n1", "wwn-0x5000c500a1b2.c3d4", func(*imagefarmv1.Drive) error { return nil }); err != nil {
		t.Errorf("UpdateDrive(deleted drive) = %v", err)
	}
}

// TestKeyValidation checks that keys take the ids internal/ident allows,
// and only those, and that a drive key is one safe token after the node's.
func TestKeyValidation(t *testing.T) {
	long := strings.Repeat("a", ident.MaxRecordIDLen)
	for _, id := range []string{"j", "job-1", "JOB_2", "0123", long} {
		if _, err := jobKey(id); err != nil {
			t.Errorf("jobKey(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", long + "a", "a.b", "a*", ">", "a b", "a/b", "a=b", "ü", "a\nb", "$KV"} {
		if _, err := jobKey(id); !errors.Is(err, ErrInvalidID) || !errors.Is(err, ident.ErrInvalid) {
			t.Errorf("jobKey(%q) = %v, want ErrInvalidID and ident.ErrInvalid", id, err)
		}
	}
	if _, err := nodeKey(strings.Repeat("n", ident.MaxNodeIDLen+1)); !errors.Is(err, ErrInvalidID) {
		t.Errorf("nodeKey(65 bytes) = %v, want ErrInvalidID: a node id is a NATS subject token of at most 64", err)
	}
	for _, id := range []string{"a.b", "x:y:z", "-lead", strings.Repeat("d", ident.MaxDriveIDLen)} {
		key, err := driveKey("n1", id)
		node, token, _ := strings.Cut(key, ".")
		if err != nil || strings.Count(key, ".") != 1 || ident.NodeID(node) != nil || ident.NodeID(token[:min(len(token), 64)]) != nil {
			t.Errorf("driveKey(n1, %q) = %q, %v; want one '.' and only [A-Za-z0-9_-] otherwise", id, key, err)
		}
	}
	for _, id := range []string{"", "a\x00b", "tab\there", "with space", "x/y", "✓", strings.Repeat("d", ident.MaxDriveIDLen+1), "\xff"} {
		if _, err := driveKey("n1", id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("driveKey(n1, %q) = %v, want ErrInvalidID", id, err)
		}
	}
	if a, _ := driveKey("n", "a.b"); a == mustKey(driveKey("n", "a_b")) {
		t.Errorf("driveKey maps a.b and a_b to the same key %q", a)
	}
}

func mustKey(k string, _ error) string { return k }

// TestStoreRefusesBadIDs checks every entry point, so no hostile id reaches
// a key or a subject.
func TestStoreRefusesBadIDs(t *testing.T) {
	js, _ := newJS(t)
	s := newStore(t, js, Config{})
	ctx := t.Context()
	bad := "a.*"
	calls := map[string]error{}
	_, calls["CreateJob"] = s.CreateJob(ctx, testJob(bad))
	_, calls["UpdateJob"] = s.UpdateJob(ctx, bad, nil)
	_, calls["GetJob"] = s.GetJob(ctx, bad)
	_, calls["CreateTask"] = s.CreateTask(ctx, testTask("j", bad, "n"))
	_, calls["CreateTask job"] = s.CreateTask(ctx, testTask(bad, "t", "n"))
	_, calls["UpdateTask"] = s.UpdateTask(ctx, "j", bad, nil)
	_, calls["GetTask"] = s.GetTask(ctx, bad, "t")
	_, calls["ListTasks"] = s.ListTasks(ctx, bad)
	_, calls["UpdateNode"] = s.UpdateNode(ctx, bad, nil)
	_, calls["GetNode"] = s.GetNode(ctx, bad)
	_, calls["UpdateDrive"] = s.UpdateDrive(ctx, bad, "d", nil)
	_, calls["UpdateDrive drive"] = s.UpdateDrive(ctx, "n", "", nil)
	_, calls["ListDrives"] = s.ListDrives(ctx, bad)
	calls["DeleteDrive"] = s.DeleteDrive(ctx, "n", "a\x00")
	_, _, calls["ListJobs"] = s.ListJobs(ctx, JobFilter{NodeID: bad})
	for name, err := range calls {
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("%s(%q) = %v, want ErrInvalidID", name, bad, err)
		}
	}
}
