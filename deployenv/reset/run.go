package reset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Run resets plan's disk, calling progress (when not nil) as each step
// starts, and returns the Report. A Run whose State holds a keep-list
// carries on from it (see the package doc); a refused Run writes nothing.
func Run(ctx context.Context, plan Plan, progress func(Step)) (*Report, error) {
	if progress == nil {
		progress = func(Step) {}
	}
	scratch, cleanup, err := scratchDir(plan)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if err := checkPlan(ctx, plan); err != nil {
		return nil, err
	}
	d, err := openDisk(plan.Disk)
	if err != nil {
		return nil, err
	}
	defer d.close()
	r := &runner{plan: plan, disk: d, scratch: scratch, progress: progress, steps: map[Step]Duration{}}
	return r.run(ctx)
}

// runner is one Run.
type runner struct {
	plan     Plan
	disk     *disk
	scratch  string
	progress func(Step)
	steps    map[Step]Duration
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	rec, err := loadRecord(ctx, r.plan.State)
	if err != nil {
		return nil, err
	}
	resumed := rec != nil
	switch {
	case rec != nil && rec.Step == StepDone:
		return rec.Report, nil
	case rec != nil:
		if err := r.sameDisk(rec); err != nil {
			return nil, err
		}
	default:
		if rec, err = r.keep(ctx); err != nil {
			return nil, err
		}
	}
	keepWIM, err := r.keepFile(ctx, rec)
	if err != nil {
		return nil, err
	}
	dev, err := r.disk.device(rec.Layout.Windows, true)
	if err != nil {
		return nil, err
	}
	staged := 0
	steps := []struct {
		step Step
		do   func() error
	}{
		{StepFormat, func() error { return format(ctx, dev, rec.Layout) }},
		{StepApply, func() error { return r.apply(ctx, dev) }},
		{StepRestore, func() error { return restoreKeep(ctx, dev, keepWIM, r.scratch) }},
		{StepStage, func() (err error) { staged, err = stage(ctx, dev, r.plan.Stage, r.scratch); return err }},
	}
	for _, s := range steps {
		if err := r.step(ctx, s.step, s.do); err != nil {
			return nil, err
		}
	}
	var removed []string
	if err := r.step(ctx, StepVerify, func() (err error) {
		removed, err = verify(ctx, r.disk, rec, r.scratch)
		return err
	}); err != nil {
		return nil, err
	}
	rep := &Report{Layout: rec.Layout, Image: r.plan.Image, Index: r.plan.Index, Kept: rec.Kept, Removed: removed,
		Staged: staged, Steps: r.steps, Resumed: resumed, Note: removedNote}
	rec.Step, rec.Report = StepDone, rep
	if err := saveRecord(ctx, r.plan.State, rec); err != nil {
		return nil, err
	}
	return rep, nil
}

// step announces and times one step; a context cancelled by the
// announcement stops the Run before the step does anything.
func (r *runner) step(ctx context.Context, s Step, do func() error) error {
	r.progress(s)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	start := time.Now()
	err := do()
	r.steps[s] += Duration(time.Since(start))
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}

// keep runs preflight and keep, and saves the keep-list to State: from
// then on the volume may be written.
func (r *runner) keep(ctx context.Context) (*record, error) {
	var l *Layout
	if err := r.step(ctx, StepPreflight, func() (err error) {
		l, err = preflight(ctx, r.plan, r.disk, r.scratch)
		return err
	}); err != nil {
		return nil, err
	}
	rec := &record{Step: StepKeep, DiskGUID: r.disk.table.DiskGUID, Layout: *l}
	err := r.step(ctx, StepKeep, func() error {
		paths, err := keepPaths(r.plan)
		if err != nil {
			return err
		}
		dev, err := r.disk.device(l.Windows, false)
		if err != nil {
			return err
		}
		c, err := captureKeep(ctx, dev, r.plan, paths, r.scratch)
		if err != nil {
			return err
		}
		rec.Kept = c.kept
		sum := sha256.Sum256(c.wim)
		rec.KeepSHA = hex.EncodeToString(sum[:])
		if err := r.plan.State.Put(ctx, stateKeep, c.wim); err != nil {
			return fmt.Errorf("save the keep-list: %w", err)
		}
		return saveRecord(ctx, r.plan.State, rec)
	})
	return rec, err
}

// sameDisk checks that a resumed Run has the disk its State was saved for.
func (r *runner) sameDisk(rec *record) error {
	w := rec.Layout.Windows
	for _, p := range r.disk.parts {
		if p.Number == w.Number && p.GUID == w.GUID && p.Start == w.Start && p.Size == w.Size && r.disk.table.DiskGUID == rec.DiskGUID {
			return nil
		}
	}
	return fmt.Errorf("%w: the State is of a reset of disk %s partition %d (%s), not on %s: give this reset its own State", ErrBadInput, rec.DiskGUID, w.Number, w.GUID, r.plan.Disk)
}

// keepFile writes the keep capture from State to a scratch file.
func (r *runner) keepFile(ctx context.Context, rec *record) (string, error) {
	b, err := loadKeep(ctx, r.plan.State, rec)
	if err != nil {
		return "", err
	}
	p := filepath.Join(r.scratch, "keep-restore.wim")
	return p, os.WriteFile(p, b, 0o600)
}

// format re-creates the NTFS file system of the Windows partition in
// place, with its label and the partition's start and the usual geometry
// written to its boot sector (mkntfs cannot read them from a loop device).
func format(ctx context.Context, dev string, l Layout) error {
	start := l.Windows.Start / int64(l.SectorSize)
	_, err := tool(ctx, nil, "mkntfs", "-Q", "-L", l.Label, "-s", strconv.Itoa(l.SectorSize),
		"-p", strconv.FormatInt(start, 10), "-H", "255", "-S", "63", dev)
	if err != nil {
		return fmt.Errorf("re-create the Windows volume: %w", err)
	}
	return nil
}

// apply applies the plan's image onto the new volume.
func (r *runner) apply(ctx context.Context, dev string) error {
	idx := strconv.Itoa(r.plan.Index)
	if r.plan.OpenImage == nil {
		_, err := tool(ctx, nil, "wimlib-imagex", "apply", r.plan.Image, idx, dev)
		return err
	}
	rc, err := r.plan.OpenImage(ctx)
	if err != nil {
		return fmt.Errorf("open the image: %w", err)
	}
	defer rc.Close()
	_, err = tool(ctx, rc, "wimlib-imagex", "apply", "-", idx, dev)
	return err
}

// scratchDir makes the Run's folder for temporary files.
func scratchDir(p Plan) (string, func(), error) {
	dir, err := os.MkdirTemp(p.Scratch, "imagefarm-reset-")
	if err != nil {
		return "", nil, fmt.Errorf("scratch folder: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
