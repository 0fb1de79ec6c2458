package reset_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv/reset"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestResetRefusesBadInput gives a reset what it must refuse: keep paths
// that escape the volume or would keep what a reset removes, a link among
// the kept files, USB packages and stage folders that are not what they
// say, an image index that is not there, a refresh with a keep-list, and a
// damaged State. Each is refused naming what was wrong, the disk unchanged
// and nothing saved.
func TestResetRefusesBadInput(t *testing.T) {
	t.Parallel()
	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	image, _ := newImage(t)
	tmp := t.TempDir()
	notPPKG := filepath.Join(tmp, "setup.exe")
	linkPPKG := filepath.Join(tmp, "link.ppkg")
	linkStage := filepath.Join(tmp, "stage")
	if err := os.WriteFile(notPPKG, []byte("MZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/shadow", linkPPKG); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(linkStage, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(linkStage, "etc")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*reset.Plan)
		text   string
	}{
		{"parent", func(p *reset.Plan) { p.Keep = []string{"ProgramData/../../etc/passwd"} }, "escapes the volume"},
		{"dot", func(p *reset.Plan) { p.Keep = []string{"./ProgramData/x"} }, "escapes the volume"},
		{"absolute", func(p *reset.Plan) { p.Keep = []string{"/ProgramData/x"} }, "is absolute"},
		{"drive", func(p *reset.Plan) { p.Keep = []string{`C:\ProgramData\x`} }, "is absolute"},
		{"backslash parent", func(p *reset.Plan) { p.Keep = []string{`ProgramData\..\..\x`} }, "escapes the volume"},
		{"stream", func(p *reset.Plan) { p.Keep = []string{"ProgramData/x:secret"} }, "colon"},
		{"config injection", func(p *reset.Plan) { p.Keep = []string{"ProgramData/x\n[ExclusionList]\n/Users"} }, "control character"},
		{"users", func(p *reset.Plan) { p.Keep = []string{"Users/alice/Documents"} }, "under Users"},
		{"whole volume", func(p *reset.Plan) { p.Keep = []string{"*"} }, "whole top-level folder"},
		{"top-level folder", func(p *reset.Plan) { p.Keep = []string{"Windows"} }, "whole top-level folder"},
		{"own folder", func(p *reset.Plan) { p.Keep = []string{".imagefarm-keep/x"} }, "own folder"},
		{"empty", func(p *reset.Plan) { p.Keep = []string{" "} }, "is empty"},
		{"usb not a package", func(p *reset.Plan) { p.USBPackages = []string{notPPKG} }, "not a regular .ppkg"},
		{"usb link", func(p *reset.Plan) { p.USBPackages = []string{linkPPKG} }, "not a regular .ppkg"},
		{"usb missing", func(p *reset.Plan) { p.USBPackages = []string{filepath.Join(tmp, "gone.ppkg")} }, "no such file"},
		{"stage link", func(p *reset.Plan) { p.Stage = []string{linkStage} }, "links are not staged"},
		{"stage not a folder", func(p *reset.Plan) { p.Stage = []string{notPPKG} }, "not a folder"},
		{"index", func(p *reset.Plan) { p.Index = 7 }, "index 7"},
		{"index zero", func(p *reset.Plan) { p.Index = 0 }, "count from 1"},
		{"image missing", func(p *reset.Plan) { p.Image = filepath.Join(tmp, "gone.wim") }, "gone.wim"},
		{"refresh keeping", func(p *reset.Plan) { p.Refresh, p.Keep = true, []string{"ProgramData/Corp/x"} }, "a refresh keeps nothing"},
		{"no state", func(p *reset.Plan) { p.State = nil }, "no State"},
	}
	before := diskHash(t, d)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(t, d, image)
			tt.change(&p)
			_, err := reset.Run(t.Context(), p, nil)
			if !errors.Is(err, reset.ErrBadInput) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Run = %v, want ErrBadInput saying %q", err, tt.text)
			}
			if p.State != nil {
				stateEmpty(t, p)
			}
		})
	}
	mbr := filepath.Join(tmp, "mbr.img")
	if err := os.WriteFile(mbr, nil, 0o644); err != nil || os.Truncate(mbr, 8<<20) != nil {
		t.Fatal("make an MBR disk")
	}
	testenv.RunStdin(t, "label: dos\ntype=7\n", "fdisk", "sfdisk", "--quiet", mbr)
	layouts := []struct {
		name   string
		change func(*reset.Plan)
	}{
		{"MBR disk", func(p *reset.Plan) { p.Disk = mbr }},
		{"MSR named as Windows", func(p *reset.Plan) { p.Partition = testenv.MSRPartition }},
		{"no such partition", func(p *reset.Plan) { p.Partition = 9 }},
	}
	for _, tt := range layouts {
		p := plan(t, d, image)
		tt.change(&p)
		if _, err := reset.Run(t.Context(), p, nil); !errors.Is(err, reset.ErrLayout) {
			t.Errorf("%s: Run = %v, want ErrLayout", tt.name, err)
		}
		stateEmpty(t, p)
	}
	if after := diskHash(t, d); after != before {
		t.Error("a refused reset changed the disk")
	}
}

// TestResetRefusesALinkInTheKeepList puts a symbolic link (ntfs-3g makes
// it a reparse point) among the provisioning files, pointing at alice's
// profile: kept, it would carry her files across; the reset is refused
// with nothing written.
func TestResetRefusesALinkInTheKeepList(t *testing.T) {
	t.Parallel()
	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	withNTFS(t, d, testenv.WindowsPartition, false, func(root string) {
		if err := os.Symlink("../../../Users/alice", filepath.Join(root, "ProgramData/Microsoft/Provisioning/alice")); err != nil {
			t.Fatal(err)
		}
	})
	before := diskHash(t, d)
	image, _ := newImage(t)
	p := plan(t, d, image)
	_, err := reset.Run(t.Context(), p, nil)
	if !errors.Is(err, reset.ErrBadInput) || !strings.Contains(err.Error(), "ProgramData/Microsoft/Provisioning/alice is a link or junction") {
		t.Errorf("Run = %v, want ErrBadInput naming the link", err)
	}
	if after := diskHash(t, d); after != before {
		t.Error("a refused reset changed the disk")
	}
	stateEmpty(t, p)
}

// TestResetRefusesACorruptVolume resets a disk whose Windows volume has
// lost its boot sector: refused as an unreadable volume, nothing written.
func TestResetRefusesACorruptVolume(t *testing.T) {
	t.Parallel()
	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	f, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 8192), d.Partitions[testenv.WindowsPartition].Start); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := diskHash(t, d)
	image, _ := newImage(t)
	p := plan(t, d, image)
	_, err = reset.Run(t.Context(), p, nil)
	if !errors.Is(err, reset.ErrVolume) || !strings.Contains(err.Error(), "partition 3") || !strings.Contains(err.Error(), "nothing written") {
		t.Errorf("Run = %v, want ErrVolume naming partition 3", err)
	}
	if after := diskHash(t, d); after != before {
		t.Error("a refused reset changed the disk")
	}
	stateEmpty(t, p)
}

// TestResetRefusesADamagedState stops a reset once its keep-list is saved,
// damages the saved capture, and runs it again: refused before the volume
// is re-created, naming the damage; and a State saved for another disk is
// refused too.
func TestResetRefusesADamagedState(t *testing.T) {
	t.Parallel()
	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	image, _ := newImage(t)
	p := plan(t, d, image)
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := reset.Run(ctx, p, func(s reset.Step) {
		if s == reset.StepFormat {
			cancel()
		}
	}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled at format = %v", err)
	}
	before := diskHash(t, d)
	keep := filepath.Join(string(p.State.(reset.DirState)), "keep.wim")
	b, err := os.ReadFile(keep)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(keep, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reset.Run(t.Context(), p, nil); !errors.Is(err, reset.ErrBadInput) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("Run with a damaged keep-list = %v, want ErrBadInput saying damaged", err)
	}

	other := filepath.Join(t.TempDir(), "other.img") // a GPT disk, nothing on it
	if err := os.WriteFile(other, nil, 0o644); err != nil || os.Truncate(other, 64<<20) != nil {
		t.Fatal("make another disk")
	}
	testenv.RunStdin(t, "label: gpt\nsize=32MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n", "fdisk", "sfdisk", "--quiet", other)
	p.Disk = other
	if _, err := reset.Run(t.Context(), p, nil); !errors.Is(err, reset.ErrBadInput) || !strings.Contains(err.Error(), "give this reset its own State") {
		t.Errorf("Run with another disk's State = %v, want ErrBadInput", err)
	}
	if after := diskHash(t, d); after != before {
		t.Error("a refused reset changed the disk")
	}
}
