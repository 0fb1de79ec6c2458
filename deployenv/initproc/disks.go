package initproc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/imager/drive"
)

// Disk is one disk of the device, as the report shows it.
type Disk struct {
	ID        string          `json:"id"`
	Path      string          `json:"path"`
	Size      int64           `json:"size"`
	Model     string          `json:"model,omitempty"`
	Serial    string          `json:"serial,omitempty"`
	Transport drive.Transport `json:"transport"`
	Removable bool            `json:"removable"`
	USB       bool            `json:"usb"`
	ReadOnly  bool            `json:"read_only"`
	// Internal is whether it can be the disk a plan names: not removable,
	// not on USB, not read-only (internal).
	Internal bool `json:"internal"`
}

// DiskOf is how drive d shows in the report.
func DiskOf(d drive.Drive) Disk {
	return Disk{
		ID: d.ID, Path: d.Path, Size: d.Size, Model: d.Model, Serial: d.Serial, Transport: d.Transport,
		Removable: d.Removable, USB: d.Transport == drive.TransportUSB, ReadOnly: d.ReadOnly,
		Internal: internal(d) == nil,
	}
}

// Errors of SelectDisk.
var (
	// ErrNoDisk: the plan names no disk, or the device has none that
	// matches it.
	ErrNoDisk = errors.New("deploy environment: no such disk")
	// ErrNotInternal: the disk the plan names is removable, on USB or
	// read-only: a key or a dock left in the laptop, never its own disk.
	ErrNotInternal = errors.New("deploy environment: not an internal disk")
)

// Want is the disk a plan names: by serial and size, as the controller
// saw it in the device's report.
type Want struct {
	Serial string
	Size   int64
}

// SelectDisk returns the one disk of drives that has want's serial and
// size. Nothing is guessed: no serial is no disk (never "the largest
// disk" or "the only one"), two disks with the serial are no disk, and
// the disk must be internal (not removable, not on USB, writable). Each
// refusal names what the plan asked for and what the device has.
func SelectDisk(drives []drive.Drive, want Want) (drive.Drive, error) {
	if want.Serial == "" {
		return drive.Drive{}, fmt.Errorf("the plan names no disk serial; a disk is never chosen without one: %w", ErrNoDisk)
	}
	var match []drive.Drive
	for _, d := range drives {
		if d.Serial == want.Serial {
			match = append(match, d)
		}
	}
	switch {
	case len(match) == 0:
		return drive.Drive{}, fmt.Errorf("no disk has serial %q; the device has %s: %w", want.Serial, describe(drives), ErrNoDisk)
	case len(match) > 1:
		return drive.Drive{}, fmt.Errorf("%d disks have serial %q (%s): which one is meant cannot be told: %w", len(match), want.Serial, describe(match), ErrNoDisk)
	}
	d := match[0]
	if d.Size != want.Size {
		return drive.Drive{}, fmt.Errorf("disk %s with serial %q has %d bytes, the plan says %d: %w", d.Path, want.Serial, d.Size, want.Size, ErrNoDisk)
	}
	if err := internal(d); err != nil {
		return drive.Drive{}, err
	}
	return d, nil
}

// internal returns ErrNotInternal, saying why, unless d can be the
// device's own disk.
func internal(d drive.Drive) error {
	var why string
	switch {
	case d.Transport == drive.TransportUSB:
		why = "is on USB"
	case d.Removable:
		why = "is removable"
	case d.ReadOnly:
		why = "is read-only"
	case !d.IsBlock() || d.Transport == drive.TransportLoop:
		why = "is not a disk of the device (" + string(d.Transport) + ")"
	default:
		return nil
	}
	return fmt.Errorf("disk %s (serial %q) %s: only the device's internal disk is written: %w", d.Path, d.Serial, why, ErrNotInternal)
}

func describe(drives []drive.Drive) string {
	if len(drives) == 0 {
		return "no disks"
	}
	var s []string
	for _, d := range drives {
		s = append(s, fmt.Sprintf("%s (serial %q, %d bytes, %s)", d.Path, d.Serial, d.Size, d.Transport))
	}
	return strings.Join(s, ", ")
}
