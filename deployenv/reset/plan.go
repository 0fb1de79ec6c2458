package reset

import (
	"context"
	"errors"
	"io"
	"time"
)

// Plan is what a reset does to one disk.
type Plan struct {
	// Disk is the whole disk: a block device (/dev/vda, /dev/nvme0n1) or,
	// in tests, a disk image file. Partitions are the kernel's partition
	// devices when it has them, else loop devices made by offset.
	Disk string
	// Partition is the Windows partition's GPT entry number (1-based), or
	// 0 to find it.
	Partition int
	// Image is the WIM on a local path, and Index the image in it.
	Image string
	Index int
	// OpenImage, when set, streams the WIM instead of Image (it must be
	// pipable, wimlib-imagex capture --pipable); it is called again when a
	// Run resumes.
	OpenImage func(ctx context.Context) (io.ReadCloser, error)
	// Keep is the admin's extra keep-list: volume-relative paths or
	// wimlib globs (ProgramData/Corp/region.xml, Windows/Panther/*.xml).
	Keep []string
	// USBPackages are .ppkg files (host paths) from USB keys attached when
	// the reset started; they are kept under Recovery/Customizations.
	USBPackages []string
	// Stage are host folders copied onto the new volume after the keep-list
	// (drivers, updates, first-boot hooks), each onto the volume's root.
	Stage []string
	// Hybrid is the device record's hybrid-join flag.
	Hybrid bool
	// Refresh empties the keep-list: a full reimage of the Windows
	// partition that keeps the other partitions.
	Refresh bool
	// State keeps the keep-list and progress across a power cut.
	State StateStore
	// Scratch is a folder for temporary files (default os.TempDir()).
	Scratch string
}

// KeepList is the standard keep-list of Autopilot Reset, as wimlib globs
// relative to the Windows volume's root.
var KeepList = []string{
	"ProgramData/Microsoft/Wlansvc/Profiles/Interfaces",
	"ProgramData/Microsoft/Provisioning",
	"Recovery/Customizations/*.ppkg",
}

// Step is a step of Run.
type Step string

// The steps of Run, in order.
const (
	StepPreflight Step = "preflight"
	StepKeep      Step = "keep"
	StepFormat    Step = "format"
	StepApply     Step = "apply"
	StepRestore   Step = "restore"
	StepStage     Step = "stage"
	StepVerify    Step = "verify"
	StepDone      Step = "done"
)

// Steps is every step in the order Run takes them.
var Steps = []Step{StepPreflight, StepKeep, StepFormat, StepApply, StepRestore, StepStage, StepVerify}

// Partition is one GPT entry and the device that reads it.
type Partition struct {
	Number int    `json:"number"` // GPT entry, 1-based
	Type   string `json:"type"`   // GPT type GUID, upper case
	GUID   string `json:"guid"`   // unique partition GUID, upper case
	Name   string `json:"name"`   // GPT name
	Start  int64  `json:"start"`  // bytes from the start of the disk
	Size   int64  `json:"size"`   // bytes
	Role   string `json:"role"`   // efi, msr, windows, recovery or data
	SHA256 string `json:"sha256,omitempty"`
}

// Layout is what Preflight found on the disk.
type Layout struct {
	SectorSize int         `json:"sector_size"`
	Partitions []Partition `json:"partitions"`
	Windows    Partition   `json:"windows"`
	Label      string      `json:"label"`     // the Windows volume's label, kept
	WinRE      string      `json:"winre"`     // partition N:path of the WinRE image
	Profiles   []string    `json:"profiles"`  // Users/* on the old volume
	Registry   string      `json:"registry"`  // what the offline registry said about joins
	Untouched  []Partition `json:"untouched"` // every other partition, hashed
}

// KeptFile is one file of the keep-list.
type KeptFile struct {
	Path   string `json:"path"` // volume-relative, as on the volume
	Size   int64  `json:"size"`
	Before string `json:"sha256_before"` // read from the old volume (or the USB key)
	After  string `json:"sha256_after"`  // read from the new volume
}

// Report is the record of a reset.
type Report struct {
	Layout  Layout            `json:"layout"`
	Image   string            `json:"image"`
	Index   int               `json:"index"`
	Kept    []KeptFile        `json:"kept"`
	Removed []string          `json:"removed"` // profiles that were on the old volume and are not on the new one
	Staged  int               `json:"staged"`  // files copied from Plan.Stage
	Steps   map[Step]Duration `json:"steps"`   // time per step of the last Run
	Resumed bool              `json:"resumed"` // this Run carried on from State
	Note    string            `json:"note"`
}

// Duration is a time.Duration that reads as text in JSON.
type Duration time.Duration

// MarshalText writes d as time.Duration's String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// removedNote is what a Report says about what a reset removes.
const removedNote = "user profiles, apps and settings removed: the Windows volume was re-created and holds only the image, the keep-list and the staged folders"

// Errors of Preflight and Run, for errors.Is.
var (
	// ErrNotSupported is a disk without the Windows Recovery Environment.
	ErrNotSupported = errors.New("no Windows Recovery Environment: ERROR_NOT_SUPPORTED (0x80070032)")
	// ErrHybridJoined is a device joined to both Active Directory and Azure AD.
	ErrHybridJoined = errors.New("hybrid-joined devices need a full wipe")
	// ErrBadInput is a plan the engine refuses: a keep path escaping the
	// volume, a missing image, a State for another disk.
	ErrBadInput = errors.New("reset: bad input")
	// ErrVolume is a Windows volume that ntfs-3g cannot read (corrupt,
	// not NTFS).
	ErrVolume = errors.New("reset: Windows volume unreadable")
	// ErrLayout is a disk whose partitions are not what a reset needs.
	ErrLayout = errors.New("reset: disk layout")
	// ErrVerify is a reset whose result is not what it should be.
	ErrVerify = errors.New("reset: verify")
)
