package media_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestStageOntoNTFS stages two update packages and a hook for a model,
// lays the folder onto a real NTFS volume (mkntfs on a loop device,
// wimlib-imagex capture and apply) and reads it back through ntfs-3g:
// SetupComplete.cmd names the packages in order, then the hook's
// first-boot points in theirs, and the files are the pushed ones.
func TestStageOntoNTFS(t *testing.T) {
	testenv.RequireRoot(t)
	f := newFixture(t)
	c := f.pushCustom(t)
	dir := filepath.Join(t.TempDir(), "stage")
	staged, err := media.Stage(t.Context(), f.c, media.StageSpec{Updates: []catalog.Ref{c.kb2, c.kb1}, Hooks: []catalog.Ref{c.checks}, Model: model, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(staged.Inputs) != 3 || len(staged.Skipped) != 1 || staged.Skipped[0].Script != "before-partition.cmd" {
		t.Errorf("Stage = %+v, want 3 inputs and the before-partition script skipped", staged)
	}
	wim := filepath.Join(t.TempDir(), "stage.wim")
	testenv.Run(t, "wimtools", "wimlib-imagex", "capture", dir, wim, "stage", "--no-acls")
	vol := testenv.NewLoop(t, 64<<20)
	testenv.Run(t, "ntfs-3g", "mkntfs", "-Q", "-q", "-F", "-L", "Windows", vol.Path)
	testenv.Run(t, "wimtools", "wimlib-imagex", "apply", wim, "1", vol.Path)
	got := testenv.NTFSFiles(t, vol.Path)

	for path, local := range map[string]string{
		"Windows/Setup/Scripts/imagefarm/updates/01-kb5044284.cab":        c.files["kb5044284:1"],
		"Windows/Setup/Scripts/imagefarm/updates/02-kb5043080.msu":        c.files["kb5043080:1"],
		"Windows/Setup/Scripts/imagefarm/hooks/01-checks/after-apply.cmd": filepath.Join(c.files["checks"], "after-apply.cmd"),
		"Windows/Setup/Scripts/imagefarm/hooks/01-checks/tools/check.ps1": filepath.Join(c.files["checks"], "tools/check.ps1"),
	} {
		want, _ := os.ReadFile(local)
		if got[path] != string(want) {
			t.Errorf("%s on the volume: %d bytes, want %d", path, len(got[path]), len(want))
		}
	}
	script, ok := got["Windows/Setup/Scripts/SetupComplete.cmd"]
	if !ok || strings.Count(script, "\n") != strings.Count(script, "\r\n") {
		t.Fatalf("the volume has no SetupComplete.cmd with CRLF line ends: %v", ok)
	}
	steps := []string{
		`set "LOG=%SystemRoot%\Logs\imagefarm\firstboot.log"`,
		`call :update "01-kb5044284.cab" "kb5044284:1" || goto :failed`,
		`call :update "02-kb5043080.msu" "kb5043080:1" || goto :failed`,
		`call :hook after-apply "01-checks" "after-apply.cmd" "checks:2" || goto :failed`,
		`call :hook after-drivers "01-checks" "after-drivers.cmd" "checks:2" || goto :failed`,
		`call :hook before-reboot "01-checks" "before-reboot.cmd" "checks:2" || goto :failed`,
		`call :log done ok`,
		`dism /Online /Add-Package /PackagePath:"%HERE%updates\%~1" /Quiet /NoRestart`,
		`call :log update %~1 %~2 exit=%RC%`,
		`>> "%LOG%" echo IMAGEFARM-FIRSTBOOT %DATE% %TIME% %*`,
	}
	at := 0
	for _, step := range steps {
		i := strings.Index(script[at:], step)
		if i < 0 {
			t.Fatalf("SetupComplete.cmd lacks %q after %q:\n%s", step, script[:at], script)
		}
		at += i + len(step)
	}
	if strings.Contains(script, "before-partition") {
		t.Errorf("SetupComplete.cmd runs the before-partition script:\n%s", script)
	}
	if media.FirstBootLog != `Windows\Logs\imagefarm\firstboot.log` {
		t.Errorf("FirstBootLog = %s", media.FirstBootLog)
	}
}

// TestStageRefuses: a staging folder for another model's update, over an
// existing folder, or with a hook that has no script is refused, and
// nothing is left beside it.
func TestStageRefuses(t *testing.T) {
	f := newFixture(t)
	c := f.pushCustom(t)
	parent := t.TempDir()
	exists := filepath.Join(parent, "exists")
	os.Mkdir(exists, 0o755)
	for _, tc := range []struct {
		name string
		spec media.StageSpec
		want string
	}{
		{"another model's update", media.StageSpec{Updates: []catalog.Ref{c.kbOther}, Model: model}, `--updates kb-opti:1 is only for "OptiPlex 7010"`},
		{"a hook without a script", media.StageSpec{Hooks: []catalog.Ref{c.noScript}}, "the folder holds no script"},
		{"an existing folder", media.StageSpec{Updates: []catalog.Ref{c.kb1}, Dir: exists}, "it exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.spec.Dir == "" {
				tc.spec.Dir = filepath.Join(parent, "stage")
			}
			if _, err := media.Stage(t.Context(), f.c, tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Stage = %v, want an error saying %q", err, tc.want)
			}
			if left, _ := os.ReadDir(parent); len(left) != 1 || left[0].Name() != "exists" {
				t.Errorf("a refused Stage left %v", left)
			}
		})
	}
}
