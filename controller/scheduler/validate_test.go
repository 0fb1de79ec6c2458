package scheduler

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateSubmit(t *testing.T) {
	f := farm(
		node("n1", "usb", usbKey("a", 8*gib), busy(usbKey("b", 32*gib), "t5"), refused(ssd("sys", 500*gib), "holds the root file system")),
		nodeIn(lost, node("n2", "usb", usbKey("a", 8*gib))),
		nodeIn(draining, labeled(node("n3", "ssd", ssd("x", 256*gib)), "rack", "3")),
		node("n4", "keys"),
	)
	many := make([]string, MaxCount+1)
	for i := range many {
		many[i] = "n1/a"
	}
	tests := []struct {
		name    string
		job     Job
		wantErr error  // nil: accepted
		wantMsg string // part of the message a person reads
	}{
		{"explicit drive", explicitJob("j", 0, 4*gib, "n1/a"), nil, ""},
		{"explicit drive exactly the image size", explicitJob("j", 0, 8*gib, "n1/a"), nil, ""},
		{"drives and selector", withSelector(explicitJob("j", 0, gib, "n1/a")), ErrBadTargets, "not both"},
		{"no targets", Job{ID: "j", ImageSize: gib}, ErrBadTargets, "no drives and no selector"},
		{"count with drives", withCount(explicitJob("j", 0, gib, "n1/a"), 3), ErrBadTargets, "a count goes with a selector"},
		{"drive listed twice", explicitJob("j", 0, gib, "n1/a", "n3/x", "n1/a"), ErrBadTargets, "n1/a is listed twice"},
		{"too many drives", explicitJob("j", 0, gib, many...), ErrBadTargets, "100001 drives listed"},
		{"malformed drive id", explicitJob("j", 0, gib, "n1/a b"), ErrBadDriveRef, `drive id "a b" has ' '`},
		{"unknown node", explicitJob("j", 0, gib, "n1/a", "n9/a"), ErrUnknownNode, `no node "n9" (nodes: n1, n2, n3, n4)`},
		{"lost node", explicitJob("j", 0, gib, "n2/a"), ErrNodeUnavailable, "node n2 is lost"},
		{"draining node", explicitJob("j", 0, gib, "n3/x"), ErrNodeUnavailable, "node n3 is draining"},
		{"unknown drive", explicitJob("j", 0, gib, "n1/zz"), ErrUnknownDrive, `no drive "zz" (its drives: a, b, sys)`},
		{"refused drive", explicitJob("j", 0, gib, "n1/sys"), ErrDriveRefused, "holds the root file system"},
		{"drive too small", explicitJob("j", 0, 16*gib, "n1/a"), ErrDriveTooSmall, "n1/a holds 8.0 GiB (8589934592 bytes), the image needs 16 GiB"},
		{"busy drive", explicitJob("j", 0, gib, "n1/b"), ErrDriveBusy, "task t5"},

		{"order", orderJob("j", 0, gib, 10, Selector{}), nil, ""},
		{"order of the largest count", orderJob("j", 0, gib, MaxCount, Selector{}), nil, ""},
		{"order of zero", orderJob("j", 0, gib, 0, Selector{}), ErrBadCount, "count 0: a standing order writes 1 to 100000 drives"},
		{"order of minus one", orderJob("j", 0, gib, -1, Selector{}), ErrBadCount, "count -1"},
		{"order too large", orderJob("j", 0, gib, MaxCount+1, Selector{}), ErrBadCount, "count 100001"},
		{"pool with a control character", orderJob("j", 0, gib, 1, Selector{Pool: "usb\n"}), ErrBadSelector, `pool "usb\n" has '\n'`},
		{"pool too long", orderJob("j", 0, gib, 1, Selector{Pool: strings.Repeat("p", 300)}), ErrBadSelector, "300 bytes long"},
		{"empty label key", orderJob("j", 0, gib, 1, Selector{Labels: map[string]string{"": "x"}}), ErrBadSelector, "is empty"},
		{"label value too long", orderJob("j", 0, gib, 1, Selector{Labels: map[string]string{"k": strings.Repeat("v", 256)}}), ErrBadSelector, "256 bytes long"},
		{"malformed node id", orderJob("j", 0, gib, 1, Selector{NodeIDs: []string{"n/1"}}), ErrBadSelector, `node id "n/1" has '/'`},
		{"unknown node in selector", orderJob("j", 0, gib, 1, Selector{NodeIDs: []string{"n1", "bench-9"}}), ErrUnknownNode, `no node "bench-9"`},
		{"unknown pool", orderJob("j", 0, gib, 1, Selector{Pool: "usbb"}), ErrUnknownPool, `no node is in pool "usbb" (pools: keys, ssd, usb)`},
		{"no node with pool and label", orderJob("j", 0, gib, 1, Selector{Pool: "usb", Labels: map[string]string{"rack": "3"}}), ErrNoMatchingNode, `pool "usb", label rack=3`},
		{"label of a draining node", orderJob("j", 0, gib, 1, Selector{Labels: map[string]string{"rack": "3"}}), nil, ""},
		{"lost node by id", orderJob("j", 0, gib, 1, Selector{NodeIDs: []string{"n2"}}), nil, ""},

		// Sizes: refuse only an order that would wait for ever.
		{"empty bench, keys come later", orderJob("j", 0, 64*gib, 5, Selector{Pool: "keys"}), nil, ""},
		{"every matching drive too small", orderJob("j", 0, 64*gib, 5, Selector{Pool: "usb"}), ErrDriveTooSmall,
			"the image needs 64 GiB (68719476736 bytes) but the 3 drives it matches hold at most 32 GiB (34359738368 bytes); insert larger drives and set a minimum size of at least 68719476736 bytes"},
		{"min size below image, all too small", orderJob("j", 0, 64*gib, 5, Selector{Pool: "usb", MinSize: 16 * gib}), ErrDriveTooSmall, "but the one drive it matches holds 32 GiB"},
		{"min size of the largest", orderJob("j", 0, gib, 1, Selector{Pool: "keys", MinSize: MaxMinSize}), nil, ""},
		{"min size larger than any drive", orderJob("j", 0, gib, 1, Selector{Pool: "keys", MinSize: MaxMinSize + 1}), ErrBadSelector, "larger than any drive"},
		{"min size at image size waits for big drives", orderJob("j", 0, 64*gib, 5, Selector{Pool: "usb", MinSize: 64 * gib}), nil, ""},
		{"one matching drive large enough, even busy", orderJob("j", 0, 16*gib, 5, Selector{Pool: "usb"}), nil, ""},
		{"refused system disk is no match", orderJob("j", 0, 600*gib, 1, Selector{NodeIDs: []string{"n1"}, Removable: ptr(false)}), nil, ""},
		{"removable filter leaves no drive", orderJob("j", 0, 600*gib, 1, Selector{Pool: "ssd", Removable: ptr(true)}), nil, ""},
		{"drive of a draining node counts", orderJob("j", 0, 300*gib, 1, Selector{Pool: "ssd"}), ErrDriveTooSmall, "the one drive it matches holds 256 GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSubmit(tt.job, f)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ValidateSubmit() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ValidateSubmit() = %q, want it to say %q", err, tt.wantMsg)
			}
		})
	}
}

func withSelector(j Job) Job     { j.Selector, j.Count = &Selector{}, 1; return j }
func withCount(j Job, n int) Job { j.Count = n; return j }

func TestParseDriveRef(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		in      string
		want    DriveRef
		wantMsg string // "" when it parses
	}{
		{"bench-3/usb-SanDisk_Cruzer_Blade_4C53", DriveRef{"bench-3", "usb-SanDisk_Cruzer_Blade_4C53"}, ""},
		{"n1/wwn-0x5000c500a1b2c3d4", DriveRef{"n1", "wwn-0x5000c500a1b2c3d4"}, ""},
		{"n1/slot-pci-0000:00:14.0-usb-0:3.2:1.0", DriveRef{"n1", "slot-pci-0000:00:14.0-usb-0:3.2:1.0"}, ""},
		{"", DriveRef{}, `drive "": want NODE/DRIVE`},
		{"n1", DriveRef{}, `drive "n1": want NODE/DRIVE`},
		{"/a", DriveRef{}, `node id "" is empty`},
		{"n1/", DriveRef{}, `drive id "" is empty`},
		{"n1/a/b", DriveRef{}, `drive id "a/b" has '/'`},
		{" n1/a", DriveRef{}, `node id " n1" has ' '`},
		{"n1/é", DriveRef{}, `drive id "é" has 'é'`},
		{"n1/" + long, DriveRef{}, "is 300 bytes long, the limit is 255"},
		{long + "/a", DriveRef{}, "… (300 bytes)"},
	}
	for _, tt := range tests {
		got, err := ParseDriveRef(tt.in)
		switch {
		case tt.wantMsg == "" && (err != nil || got != tt.want):
			t.Errorf("ParseDriveRef(%q) = %v, %v, want %v, nil", tt.in, got, err, tt.want)
		case tt.wantMsg != "" && (!errors.Is(err, ErrBadDriveRef) || !strings.Contains(err.Error(), tt.wantMsg)):
			t.Errorf("ParseDriveRef(%q) = %v, want an ErrBadDriveRef saying %q", tt.in, err, tt.wantMsg)
		case err == nil && got.String() != tt.in:
			t.Errorf("ParseDriveRef(%q).String() = %q, want %q", tt.in, got.String(), tt.in)
		}
	}
}
