package media

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// HookPoints are the points of a deploy that a hook's scripts run at, in
// the order deploy.cmd reaches them: before the disk is partitioned (it
// has been chosen and confirmed), after the WIM is applied, after the
// drivers are added, and at the end, before the technician restarts.
var HookPoints = []string{"before-partition", "after-apply", "after-drivers", "before-reboot"}

// ErrBadHook is a hook folder deploy.cmd could not run: a script named
// after no point, or no script at all.
var ErrBadHook = errors.New("media: bad hook")

// hookScriptExts are the scripts cmd.exe runs, the only ones WinPE has
// an interpreter for out of the box.
var hookScriptExts = []string{".cmd", ".bat"}

// HookScripts reads the hook folder dir and returns its scripts by point:
// a script is a .cmd or .bat file at the folder's top named after its
// point (after-apply.cmd); other files, and anything in subfolders, are
// what the scripts use. A top-level script named after no point, two
// scripts for one point, or no script at all is refused, saying what the
// folder should hold.
func HookScripts(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hook folder: %w", err)
	}
	scripts := map[string]string{}
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.Type().IsRegular() || !slices.Contains(hookScriptExts, ext) {
			continue
		}
		point := strings.ToLower(strings.TrimSuffix(e.Name(), filepath.Ext(e.Name())))
		if !slices.Contains(HookPoints, point) {
			return nil, fmt.Errorf("%w: script %s is for no point of a deploy (%q is unknown): name it after the point it runs at, one of %s, "+
				"or move it into a subfolder if another script calls it", ErrBadHook, e.Name(), point, pointScripts())
		}
		if prev, ok := scripts[point]; ok {
			return nil, fmt.Errorf("%w: %s and %s both run at %s; keep one", ErrBadHook, prev, e.Name(), point)
		}
		scripts[point] = e.Name()
	}
	if len(scripts) == 0 {
		return nil, fmt.Errorf("%w: the folder holds no script: a hook folder holds a .cmd script named after the point it runs at, one of %s",
			ErrBadHook, pointScripts())
	}
	return scripts, nil
}

func pointScripts() string {
	names := make([]string, len(HookPoints))
	for i, p := range HookPoints {
		names[i] = p + ".cmd"
	}
	return strings.Join(names, ", ")
}
