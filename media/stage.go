package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"text/template"

	_ "embed"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Where a staging folder puts things on the Windows volume, and the log
// SetupComplete.cmd writes there (FirstBootLog, a path on the volume).
const (
	setupScripts   = "Windows/Setup/Scripts"
	setupComplete  = setupScripts + "/SetupComplete.cmd"
	stagePayload   = setupScripts + "/imagefarm"
	FirstBootLog   = `Windows\Logs\imagefarm\firstboot.log`
	firstBootLogOn = `%SystemRoot%\Logs\imagefarm\firstboot.log`
)

// firstBootPoints are the hook points SetupComplete.cmd runs, in order:
// on the network path the deploy environment partitioned the disk, applied
// the image and staged the drivers, so each of these is past by first
// boot; before-partition has nothing to run before.
var firstBootPoints = []string{"after-apply", "after-drivers", "before-reboot"}

var (
	//go:embed scripts/SetupComplete.cmd.tmpl
	setupCompleteSource   string
	setupCompleteTemplate = template.Must(template.New("SetupComplete.cmd").Parse(setupCompleteSource))
)

// StageSpec says what to stage onto a Windows volume for its first boot,
// on the network path, where the deploy environment cannot run DISM.
type StageSpec struct {
	Updates []catalog.Ref // update packages, added in this order by DISM /Online at first boot
	Hooks   []catalog.Ref // hook folders, their scripts run at first boot in the hooks' order, point by point
	Model   string        // the exact model of the device; empty takes only universal inputs
	Dir     string        // the folder to make, a new path; it appears only once complete
	Log     *slog.Logger  // steps, at info; nil logs nothing
}

// Staged is what Stage made.
type Staged struct {
	Inputs  []Input
	Skipped []HookCall // before-partition scripts, which have no point at first boot
}

// Stage makes spec.Dir, a folder to lay onto the root of a new Windows
// volume (the reset engine's Plan.Stage): the update packages under
// Windows/Setup/Scripts/imagefarm/updates, the hooks under .../hooks, and
// Windows/Setup/Scripts/SetupComplete.cmd, which Windows runs at the end of
// its first boot's setup and which adds the updates in order, then runs
// the hooks' after-apply, after-drivers and before-reboot scripts, writing
// each result to FirstBootLog for the device's next check-in. The inputs
// are checked (kind, the exact-model rule) before anything is downloaded.
func Stage(ctx context.Context, c *catalog.Catalog, spec StageSpec) (*Staged, error) {
	if spec.Log == nil {
		spec.Log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Lstat(spec.Dir); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("media: stage into %s: it exists (or cannot be read: %v); give a new folder", spec.Dir, err)
	}
	r := &resolver{c: c, model: spec.Model}
	if err := r.customisations(ctx, spec.Updates, spec.Hooks); err != nil {
		return nil, err
	}
	tmp, remove, err := userpath.TempFolder(filepath.Dir(spec.Dir), "."+filepath.Base(spec.Dir)+".stage-")
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	defer remove()
	b := &builder{c: c, inputs: r.inputs, work: filepath.Join(tmp, filepath.FromSlash(stagePayload)), log: spec.Log}
	for _, in := range r.inputs {
		if in.Role == "updates" {
			err = b.update(ctx, in, len(b.updates)+1, "updates")
		} else {
			err = b.hook(ctx, in, len(b.hooks)+1, "hooks")
		}
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", in.Role, in.Ref, err)
		}
	}
	script, skipped, err := setupCompleteScript(b)
	if err == nil {
		err = os.MkdirAll(filepath.Join(tmp, filepath.FromSlash(setupScripts)), 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, filepath.FromSlash(setupComplete)), script, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, spec.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("media: stage into %s: %w", spec.Dir, err)
	}
	spec.Log.Info("first-boot staging folder made", "path", spec.Dir, "updates", len(b.updates), "hooks", len(b.hooks))
	return &Staged{Inputs: r.inputs, Skipped: skipped}, nil
}

// setupCompleteScript returns SetupComplete.cmd, with CRLF line ends, and
// the hook scripts it does not run.
func setupCompleteScript(b *builder) ([]byte, []HookCall, error) {
	type call struct {
		HookCall
		Point string
	}
	data := struct {
		Inputs  []string
		Updates []keyUpdate
		Hooks   []call
		Log     string
	}{Updates: b.updates, Log: firstBootLogOn}
	for _, in := range b.inputs {
		data.Inputs = append(data.Inputs, fmt.Sprintf("%-8s %s@%s", in.Role+":", in.Ref, in.Digest))
	}
	calls := hookCalls(b.hooks)
	for _, point := range firstBootPoints {
		for _, hc := range calls[point] {
			data.Hooks = append(data.Hooks, call{hc, point})
		}
	}
	var out bytes.Buffer
	if err := setupCompleteTemplate.Execute(&out, data); err != nil {
		return nil, nil, err
	}
	return crlf(out.String()), calls["before-partition"], nil
}
