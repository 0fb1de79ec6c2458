package media

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/wim"
)

var update = flag.Bool("update", false, "write testdata/*.golden from the scripts made now")

// scriptsFor renders the key's scripts for a key of a model with drivers,
// a provisioning package and a WIM of two images.
func scriptsFor(t *testing.T, split bool) map[string]string {
	t.Helper()
	ref := func(s string) catalog.Ref { r, _ := catalog.ParseRef(s); return r }
	b := &builder{spec: Spec{Model: "Latitude 7440"}, ppkgs: []string{"enroll.ppkg"}, wimParts: 1, inputs: []Input{
		{Role: "winpe", Ref: ref("winpe:26100"), Digest: "sha256:" + strings.Repeat("a", 64)},
		{Role: "wim", Ref: ref("latitude-recovery:2026.11"), Digest: "sha256:" + strings.Repeat("b", 64), Manifest: &catalog.Manifest{
			WIM: &wim.Info{Images: []wim.Image{{Index: 1, Name: "Windows 11 Pro"}, {Index: 2, Name: "Windows 11 Enterprise"}}}}},
		{Role: "drivers", Ref: ref("drivers-latitude-7440:2026.11"), Digest: "sha256:" + strings.Repeat("c", 64)},
		{Role: "ppkg", Ref: ref("enroll:3"), Digest: "sha256:" + strings.Repeat("d", 64)},
	}}
	b.updates = []keyUpdate{{File: "01-kb5043080.msu", Ref: "kb5043080:1"}, {File: "02-kb5044284.msu", Ref: "kb5044284:1"}}
	all := map[string]string{}
	for _, p := range HookPoints {
		all[p] = p + ".cmd"
	}
	b.hooks = []keyHook{{Folder: "01-checks", Ref: "checks:2", Scripts: all}, {Folder: "02-asset-tag", Ref: "asset-tag:1", Scripts: map[string]string{"after-apply": "After-Apply.CMD"}}}
	if split {
		b.wimParts = 3
	}
	files, err := writeScripts(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if bytes.Count(f.Data, []byte("\n")) != bytes.Count(f.Data, []byte("\r\n")) {
			t.Errorf("%s has bare LF line ends; cmd.exe and diskpart want CRLF", f.Path)
		}
		out[f.Path] = string(f.Data)
	}
	return out
}

// TestScriptsGolden compares the scripts with the reviewed ones in
// testdata (go test ./media -run TestScriptsGolden -update rewrites them;
// review the diff).
func TestScriptsGolden(t *testing.T) {
	for name, text := range scriptsFor(t, false) {
		golden := filepath.Join("testdata", name+".golden")
		if *update {
			if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if text != string(want) {
			t.Errorf("%s differs from %s (rerun with -update and review the diff):\n%s", name, golden, text)
		}
	}
}

// TestDeployNamesNoDisk: no script names a disk number; the disk is
// selected only as the one deploy.cmd checked (%DISK%, or %1 in the
// subroutine that checks it), and erased only after the checks.
func TestDeployNamesNoDisk(t *testing.T) {
	for _, split := range []bool{false, true} {
		s := scriptsFor(t, split)
		deploy, parts := s[deployName], s[partitionsName]
		if strings.Contains(strings.ToLower(parts), "select disk") {
			t.Errorf("%s selects a disk itself:\n%s", partitionsName, parts)
		}
		if !strings.Contains(parts, "\r\nclean\r\n") {
			t.Errorf("%s does not clean the disk deploy.cmd selected", partitionsName)
		}
		for _, m := range regexp.MustCompile(`(?i)select disk \S+`).FindAllString(deploy, -1) {
			if m != "select disk %DISK%&" && m != "select disk %1&" {
				t.Errorf("deploy.cmd has %q, want only the disk it checked", m)
			}
		}
		if strings.Contains(strings.ToLower(deploy), "disk 0") {
			t.Errorf("deploy.cmd still names disk 0")
		}
		erase := strings.Index(deploy, "\r\n:erase\r\n")
		for _, check := range []string{
			`call :inspect %DISK% || goto :fail`,                              // the disk's verdict
			`if not "%DOK%"=="1" goto :refused`,                               // refused: never erased
			`set /p "ANSWER=Type %DISK% and Enter to erase disk %DISK%`,       // the technician types the number
			`call :same SHOWN "%DMODEL%/%DSIZE%/%DTYPE%" || (echo == Stopped`, // still the disk shown
		} {
			if i := strings.Index(deploy, check); i < 0 || i > erase {
				t.Errorf("deploy.cmd lacks %q before :erase", check)
			}
		}
		for _, refusal := range []string{
			`for %%t in (SATA NVMe ATA SCSI SAS RAID MMC) do`,
			`if defined REMOVABLE set "WHY=holds a removable volume"`,
			`if defined BOOT if /i not "!BOOT!"=="No" set "WHY=is the disk this PC booted from`,
			`if /i "%%a"=="Volume" if /i "%%c"=="%KEYLETTER%" set "HOLDSKEY=1"`,
			`if defined HOLDSKEY set "WHY=holds this key`,
			`if not defined BOOT set "WHY=`,
		} {
			if !strings.Contains(deploy, refusal) {
				t.Errorf("deploy.cmd lacks the refusal %q", refusal)
			}
		}
		if erase < 0 || strings.Count(deploy, "diskpart /s \"%WORK%\\partitions.txt\"") != 1 ||
			strings.Index(deploy, "diskpart /s \"%WORK%\\partitions.txt\"") < erase {
			t.Errorf("deploy.cmd partitions a disk elsewhere than once, after :erase")
		}
	}
}

// TestDeployIsWellFormed checks what cmd.exe would only find at run time:
// every goto and call names a label defined once, and parentheses
// (outside quotes and rem lines) close every block they open.
func TestDeployIsWellFormed(t *testing.T) {
	checkWellFormed(t, deployName, scriptsFor(t, false)[deployName])
	b := &builder{updates: []keyUpdate{{File: "01-kb5044284.msu", Ref: "kb5044284:1"}},
		hooks: []keyHook{{Folder: "01-checks", Ref: "checks:2", Scripts: map[string]string{"after-apply": "after-apply.cmd", "before-reboot": "before-reboot.cmd"}}}}
	setup, _, err := setupCompleteScript(b)
	if err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, "SetupComplete.cmd", string(setup))
}

func checkWellFormed(t *testing.T, name, deploy string) {
	t.Helper()
	labels := map[string]int{}
	for _, line := range strings.Split(deploy, "\r\n") {
		if strings.HasPrefix(line, ":") {
			labels[strings.ToLower(strings.Fields(line)[0])]++
		}
	}
	for l, n := range labels {
		if n != 1 {
			t.Errorf("%s: label %s defined %d times", name, l, n)
		}
	}
	for _, m := range regexp.MustCompile(`(?i)(?:goto|call) (:\w+)`).FindAllStringSubmatch(deploy, -1) {
		if l := strings.ToLower(m[1]); labels[l] != 1 && l != ":eof" {
			t.Errorf("%s: %q jumps to %s, which is not defined", name, m[0], m[1])
		}
	}
	depth := 0
	for i, line := range strings.Split(deploy, "\r\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], "rem") {
			continue
		}
		quoted := false
		for _, r := range line {
			switch {
			case r == '"':
				quoted = !quoted
			case r == '(' && !quoted:
				depth++
			case r == ')' && !quoted:
				depth--
			}
			if depth < 0 {
				t.Fatalf("%s: line %d closes a block never opened: %s", name, i+1, line)
			}
		}
	}
	if depth != 0 {
		t.Errorf("%s leaves %d blocks open", name, depth)
	}
}
