package reset_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/deployenv/reset"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// wifiProfile is a kept file given NTFS metadata a file copy would lose.
const wifiProfile = testenv.WiFiProfileDir + "/{0D1E2F3A-4B5C-4D6E-8F70-8192A3B4C5D6}.xml"

// withNTFS mounts partition n of d with ntfs-3g (named streams as user.*
// extended attributes) and calls do on its root.
func withNTFS(t testing.TB, d *testenv.WindowsDisk, n int, ro bool, do func(root string)) {
	t.Helper()
	dev := d.AttachPartition(t, n)
	defer dev.Detach(t)
	opts := "streams_interface=xattr"
	if ro {
		opts += ",ro"
	}
	testenv.MountNTFS(t, dev.Path, opts, do)
}

// metadata is what NTFS keeps of a file besides its bytes, read through
// ntfs-3g: attributes, security descriptor and a named stream.
func metadata(t testing.TB, file string) [3]string {
	t.Helper()
	var m [3]string
	for i, attr := range []string{"system.ntfs_attrib", "system.ntfs_acl", "user.Zone.Identifier"} {
		buf := make([]byte, 4096)
		n, err := unix.Getxattr(file, attr, buf)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", file, attr, err)
		}
		m[i] = string(buf[:n])
	}
	return m
}

// TestResetKeepsTheKeepListAndRemovesUsers resets a Windows disk: the new
// image's files are on the volume as ntfs-3g reads them back, alice's
// profile is gone, every kept file (Wi-Fi profiles, provisioning packages,
// a USB key's package, an admin's keep path) is there by hash with its NTFS metadata, the stage
// folder is laid, the volume keeps its label and boot geometry, and the
// EFI, MSR and recovery partitions are byte-identical.
func TestResetKeepsTheKeepListAndRemovesUsers(t *testing.T) {
	t.Parallel()
	const region = "ProgramData/Contoso Corp/Région/intl.xml" // an admin's keep path
	d := newDisk(t, hiveJoins{domain: "corp.example.com"}, testenv.WindowsDiskOptions{Files: map[string]string{region: "<gs:GlobalizationServices/>\n"}})
	var before [3]string
	withNTFS(t, d, testenv.WindowsPartition, false, func(root string) {
		f := filepath.Join(root, wifiProfile)
		if err := unix.Setxattr(f, "user.Zone.Identifier", []byte("[ZoneTransfer]\r\nZoneId=3\r\n"), 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(f, "system.ntfs_attrib", []byte{0x23, 0, 0, 0}, 0); err != nil { // read-only, hidden, archive
			t.Fatal(err)
		}
		before = metadata(t, f)
	})
	others := partitionHashes(t, d)
	image, imageFiles := newImage(t)
	usb := filepath.Join(t.TempDir(), "Enroll.ppkg")
	if err := os.WriteFile(usb, []byte("PK\x03\x04 package from a USB key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stage := t.TempDir()
	testenv.WriteTree(t, stage, map[string]string{
		"Windows/Setup/Scripts/SetupComplete.cmd": "@echo first boot\r\n",
		"Drivers/Contoso/contoso.inf":             "[Version]\r\n",
	})
	p := plan(t, d, image)
	p.USBPackages, p.Stage, p.Keep = []string{usb}, []string{stage}, []string{"ProgramData/Contoso Corp/**"}
	var steps []reset.Step
	rep, err := reset.Run(t.Context(), p, func(s reset.Step) { steps = append(steps, s) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(steps, reset.Steps) {
		t.Errorf("steps %v, want %v", steps, reset.Steps)
	}

	want := map[string]string{
		wifiProfile: d.Files[wifiProfile],
		testenv.WiFiProfileDir + "/{1A2B3C4D-5E6F-4A8B-9C0D-1E2F3A4B5C6D}.xml": d.Files[testenv.WiFiProfileDir+"/{1A2B3C4D-5E6F-4A8B-9C0D-1E2F3A4B5C6D}.xml"],
		testenv.ProvisioningPackage:           d.Files[testenv.ProvisioningPackage],
		customization:                         d.Files[customization],
		"Recovery/Customizations/Enroll.ppkg": "PK\x03\x04 package from a USB key\n",
		region:                                d.Files[region],
	}
	if len(rep.Kept) != len(want) {
		t.Errorf("kept %d files, want %d: %+v", len(rep.Kept), len(want), rep.Kept)
	}
	for _, k := range rep.Kept {
		content, ok := want[k.Path]
		if !ok || k.Before != sha(content) || k.After != k.Before || k.Size != int64(len(content)) {
			t.Errorf("kept %+v, want sha256 %s before and after, %d bytes", k, sha(content), len(content))
		}
	}
	if !slices.Equal(rep.Removed, []string{"Users/alice"}) || !strings.Contains(rep.Note, "user profiles") {
		t.Errorf("report removed %v (%q), want Users/alice", rep.Removed, rep.Note)
	}

	dev := d.AttachPartition(t, testenv.WindowsPartition)
	got := testenv.NTFSFiles(t, dev.Path)
	wantVolume := map[string]string{
		"Windows/Setup/Scripts/SetupComplete.cmd": "@echo first boot\r\n",
		"Drivers/Contoso/contoso.inf":             "[Version]\r\n",
	}
	for _, m := range []map[string]string{imageFiles, want} {
		for k, v := range m {
			wantVolume[k] = v
		}
	}
	for path, content := range wantVolume {
		if got[path] != content {
			t.Errorf("%s on the new volume: %d bytes, want %d", path, len(got[path]), len(content))
		}
	}
	for path := range got {
		if _, ok := wantVolume[path]; !ok {
			t.Errorf("%s on the new volume: neither the image's, kept nor staged", path)
		}
	}
	testenv.Run(t, "wimtools", "wimlib-imagex", "verify", image)
	if label := strings.TrimSpace(testenv.Run(t, "ntfs-3g", "ntfslabel", dev.Path)); label != "Windows" {
		t.Errorf("label %q, want Windows", label)
	}
	checkBootSector(t, d, dev.Path)
	dev.Detach(t)

	withNTFS(t, d, testenv.WindowsPartition, true, func(root string) {
		if after := metadata(t, filepath.Join(root, wifiProfile)); after != before {
			t.Errorf("kept %s metadata (attributes, security descriptor, stream) %q, want %q", wifiProfile, after, before)
		}
	})
	if after := partitionHashes(t, d); !maps.Equal(after, others) {
		t.Errorf("partitions other than Windows changed: %v, were %v", after, others)
	}
}

// checkBootSector checks the new NTFS boot sector: hidden sectors are the
// partition's start, the geometry is 255 heads and 63 sectors per track,
// as Windows needs to boot from it.
func checkBootSector(t testing.TB, d *testenv.WindowsDisk, dev string) {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	le := func(off, n int) int64 {
		v := int64(0)
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | int64(b[off+i])
		}
		return v
	}
	start := d.Partitions[testenv.WindowsPartition].Start / 512
	if string(b[3:11]) != "NTFS    " || le(0x1c, 4) != start || le(0x1a, 2) != 255 || le(0x18, 2) != 63 {
		t.Errorf("boot sector: %q, hidden sectors %d (want %d), heads %d, sectors per track %d", b[3:11], le(0x1c, 4), start, le(0x1a, 2), le(0x18, 2))
	}
}

// TestResetRefusals are resets refused before anything is written: the
// disk's bytes and the State stay as they were.
func TestResetRefusals(t *testing.T) {
	t.Parallel()
	image, _ := newImage(t)
	tests := []struct {
		name   string
		joins  hiveJoins
		opts   testenv.WindowsDiskOptions
		change func(*reset.Plan)
		want   error
		text   string
	}{
		{name: "no WinRE", opts: testenv.WindowsDiskOptions{NoWinRE: true}, want: reset.ErrNotSupported, text: "ERROR_NOT_SUPPORTED (0x80070032)"},
		{name: "no recovery partition", opts: testenv.WindowsDiskOptions{NoRecovery: true}, want: reset.ErrNotSupported, text: "0x80070032"},
		{name: "hybrid by record", change: func(p *reset.Plan) { p.Hybrid = true }, want: reset.ErrHybridJoined, text: "device record"},
		{name: "hybrid by registry", joins: hiveJoins{domain: "corp.example.com", aad: true}, want: reset.ErrHybridJoined, text: `domain "corp.example.com", 1 Azure AD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDisk(t, tt.joins, tt.opts)
			before := diskHash(t, d)
			p := plan(t, d, image)
			if tt.change != nil {
				tt.change(&p)
			}
			_, err := reset.Run(t.Context(), p, nil)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Run = %v, want %v saying %q", err, tt.want, tt.text)
			}
			if _, perr := reset.Preflight(t.Context(), p); !errors.Is(perr, tt.want) {
				t.Errorf("Preflight = %v, want %v", perr, tt.want)
			}
			if after := diskHash(t, d); after != before {
				t.Error("a refused reset changed the disk")
			}
			stateEmpty(t, p)
		})
	}
}

// TestResetResumesAfterACrash stops a reset as each step after keep
// starts (a power cut: the volume may be re-created and empty), then runs
// it again with the same State: it takes the keep-list from State and ends
// with the volume a reset without a crash makes.
func TestResetResumesAfterACrash(t *testing.T) {
	t.Parallel()
	image, imageFiles := newImage(t)
	for _, at := range []reset.Step{reset.StepFormat, reset.StepApply, reset.StepRestore} {
		t.Run(string(at), func(t *testing.T) {
			t.Parallel()
			d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
			others := partitionHashes(t, d)
			p := plan(t, d, image)
			ctx, cancel := context.WithCancel(t.Context())
			_, err := reset.Run(ctx, p, func(s reset.Step) {
				if s == at {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run cancelled at %s = %v, want context.Canceled", at, err)
			}
			rep, err := reset.Run(t.Context(), p, nil)
			if err != nil {
				t.Fatalf("Run after the crash: %v", err)
			}
			if !rep.Resumed || len(rep.Kept) != 4 {
				t.Errorf("report after the crash: resumed %v, %d kept, want resumed and 4", rep.Resumed, len(rep.Kept))
			}
			dev := d.AttachPartition(t, testenv.WindowsPartition)
			got := testenv.NTFSFiles(t, dev.Path)
			for path, content := range imageFiles {
				if got[path] != content {
					t.Errorf("%s after the resumed reset: %d bytes, want the image's %d", path, len(got[path]), len(content))
				}
			}
			for _, k := range []string{wifiProfile, testenv.ProvisioningPackage, customization} {
				if got[k] != d.Files[k] {
					t.Errorf("kept %s after the resumed reset: %q, want %q", k, got[k], d.Files[k])
				}
			}
			if _, ok := got[testenv.AliceDocument]; ok {
				t.Errorf("%s survived the resumed reset", testenv.AliceDocument)
			}
			if len(got) != len(imageFiles)+4 {
				t.Errorf("%d files on the volume, want the image's %d and 4 kept", len(got), len(imageFiles))
			}
			dev.Detach(t)
			if after := partitionHashes(t, d); !maps.Equal(after, others) {
				t.Errorf("partitions other than Windows changed: %v, were %v", after, others)
			}
			again, err := reset.Run(t.Context(), p, nil)
			if err != nil || again.Kept[0] != rep.Kept[0] {
				t.Errorf("Run after a finished reset = %v, %v; want its report", again, err)
			}
		})
	}
}

// TestRefreshKeepsNothing refreshes a disk (an empty keep-list), streaming
// a pipable WIM: the volume holds the image's files and nothing of the old
// one, Wi-Fi profiles included, and the other partitions are unchanged.
func TestRefreshKeepsNothing(t *testing.T) {
	t.Parallel()
	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	others := partitionHashes(t, d)
	image, imageFiles := newImage(t)
	pipable := filepath.Join(t.TempDir(), "pipable.wim")
	testenv.Run(t, "wimtools", "wimlib-imagex", "export", image, "1", pipable, "--pipable")
	p := plan(t, d, "")
	p.Refresh = true
	opened := 0
	p.OpenImage = func(context.Context) (io.ReadCloser, error) {
		opened++
		return os.Open(pipable)
	}
	rep, err := reset.Run(t.Context(), p, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Kept) != 0 || opened != 1 {
		t.Errorf("refresh kept %v, opened the image %d times; want nothing kept, opened once", rep.Kept, opened)
	}
	dev := d.AttachPartition(t, testenv.WindowsPartition)
	got := testenv.NTFSFiles(t, dev.Path)
	if !maps.Equal(got, imageFiles) {
		t.Errorf("refreshed volume holds %d files, want exactly the image's %d", len(got), len(imageFiles))
		for k := range got {
			if _, ok := imageFiles[k]; !ok {
				t.Errorf("%s is not the image's", k)
			}
		}
	}
	dev.Detach(t)
	if after := partitionHashes(t, d); !maps.Equal(after, others) {
		t.Errorf("partitions other than Windows changed: %v, were %v", after, others)
	}
}
