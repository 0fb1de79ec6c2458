package imager

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/imagefarm/imagefarm/imager/drive"
)

// Plan is one drive asked for: the drive, what every guard said, and why
// it will not be written, if it will not.
type Plan struct {
	Drive    drive.Drive     `json:"drive"`
	Verdicts []drive.Verdict `json:"verdicts"`
	Refused  string          `json:"refused,omitempty"`
	// Err is why Open refused the drive (identity changed, busy, gone).
	Err error `json:"-"`
	// Task is the id of the task the drive is planned for, "" outside the
	// farm; Open logs it.
	Task string `json:"task,omitempty"`
}

// PlanDrives finds each named drive (by id or path) and runs the passive
// guards on it for an image of imageSize bytes. Nothing is opened. A name
// that matches no drive, or a drive named twice, is an error.
func PlanDrives(names []string, imageSize int64, cfg drive.Config) ([]Plan, error) {
	drives, err := drive.Discover(cfg)
	if err != nil {
		return nil, err
	}
	var plans []Plan
	for _, name := range names {
		d, err := drive.Find(drives, name)
		if err != nil {
			return nil, fmt.Errorf("drive %s: %w (list drives with `imagefarm drives`)", name, err)
		}
		if slices.ContainsFunc(plans, func(p Plan) bool { return p.Drive.ID == d.ID }) {
			return nil, fmt.Errorf("drive %s: %s is named twice", name, d.ID)
		}
		plans = append(plans, NewPlan(d, imageSize, cfg))
	}
	return plans, nil
}

// NewPlan runs the passive guards on d.
func NewPlan(d drive.Drive, imageSize int64, cfg drive.Config) Plan {
	p := Plan{Drive: d, Verdicts: drive.Check(d, imageSize, cfg)}
	if err := drive.Refusal(p.Verdicts); err != nil {
		p.Refused = err.Error()
	}
	return p
}

// Open re-checks each admitted drive's identity just before opening it
// exclusively, and returns the targets to write. A drive that fails either
// check is marked refused in plans, not written. close closes the targets.
func Open(plans []Plan, cfg drive.Config, log *slog.Logger) (targets []Target, close func()) {
	for i := range plans {
		p := &plans[i]
		if p.Refused != "" {
			log.Warn("drive refused", "drive", p.Drive.ID, "path", p.Drive.Path, "reason", p.Refused)
			continue
		}
		dev, now, err := openPlanned(p.Drive, cfg)
		if err != nil {
			p.Refused, p.Err = err.Error(), err
			log.Warn("drive refused", "drive", p.Drive.ID, "path", p.Drive.Path, "reason", p.Refused)
			continue
		}
		// The fault tests read these two lines to prove that no drive had
		// two writers and each was the one planned.
		log.Debug("drive opened", "drive", p.Drive.ID, "path", now.Path, "serial", now.Serial, "size", now.Size, "task_id", p.Task)
		dev = &closeOnce{Device: dev, closed: func() { log.Debug("drive closed", "drive", p.Drive.ID, "path", p.Drive.Path) }}
		targets = append(targets, Target{ID: p.Drive.ID, Path: p.Drive.Path, Dev: dev})
	}
	return targets, func() {
		for _, t := range targets {
			t.Dev.Close()
		}
	}
}

// closeOnce closes its device once, however often Close is called, so
// that a drive can be closed as soon as its result is final and again with
// the rest.
type closeOnce struct {
	Device
	once   sync.Once
	err    error
	closed func()
}

func (c *closeOnce) Close() error {
	c.once.Do(func() {
		c.err = c.Device.Close()
		c.closed()
	})
	return c.err
}

// openPlanned re-checks planned and opens it exclusively, returning the
// device and the drive as it is now.
func openPlanned(planned drive.Drive, cfg drive.Config) (Device, drive.Drive, error) {
	now, err := drive.Reverify(planned, cfg)
	if err != nil {
		return nil, now, err
	}
	f, direct, err := drive.OpenExclusive(now)
	if err != nil {
		return nil, now, err
	}
	return NewFileDevice(f, direct), now, nil
}
