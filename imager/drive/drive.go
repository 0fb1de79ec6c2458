package drive

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/userpath"
)

// Sentinel errors; the typed errors of this package wrap them, so callers
// test with errors.Is.
var (
	// ErrRefused is wrapped by *RefusedError: a guard refused the drive.
	ErrRefused = errors.New("drive: refused")
	// ErrBusy means the drive could not be opened exclusively: it is
	// mounted, held by device-mapper or md, or open in another writer.
	ErrBusy = errors.New("drive: busy")
	// ErrIdentityChanged is wrapped by *IdentityError: the device at the
	// planned path is not the drive the write was planned for.
	ErrIdentityChanged = errors.New("drive: identity changed")
	// ErrNotFound means no drive matches a name, or a planned drive is gone.
	ErrNotFound = errors.New("drive: not found")
)

// Transport is how a drive is attached.
type Transport string

// The transports Discover reports.
const (
	TransportUSB     Transport = "usb"
	TransportSATA    Transport = "sata"
	TransportSCSI    Transport = "scsi"
	TransportNVMe    Transport = "nvme"
	TransportMMC     Transport = "mmc"
	TransportVirtio  Transport = "virtio"
	TransportLoop    Transport = "loop"
	TransportVirtual Transport = "virtual"
	TransportUnknown Transport = "unknown"
)

// Drive is one whole disk the node could write.
type Drive struct {
	// ID is stable across re-plugs and reboots: built from the serial (or
	// the WWN, or the slot when a cheap bridge reports neither); for a loop
	// device from its backing file's path and inode; for a virtual drive
	// from its file name.
	ID string `json:"id"`
	// Path is what to open: /dev/sdb, /dev/loop3, or a virtual drive's file.
	Path string `json:"path"`
	// Name is the kernel name (sdb, loop3) or a virtual drive's file name.
	Name              string    `json:"name"`
	Size              int64     `json:"size"`
	LogicalBlockSize  int       `json:"logical_block_size"`
	PhysicalBlockSize int       `json:"physical_block_size"`
	Vendor            string    `json:"vendor,omitempty"`
	Model             string    `json:"model,omitempty"`
	Serial            string    `json:"serial,omitempty"`
	WWN               string    `json:"wwn,omitempty"`
	Removable         bool      `json:"removable"`
	Transport         Transport `json:"transport"`
	// Slot is the physical port, in /dev/disk/by-path form; "" if unknown.
	Slot string `json:"slot,omitempty"`
	// SlotLabel is what the node config calls the slot ("bench 3, port 12").
	SlotLabel string `json:"slot_label,omitempty"`
	ReadOnly  bool   `json:"read_only"`
	// DevNum is "MAJ:MIN" for block devices, "" for virtual drives.
	DevNum string `json:"dev_num,omitempty"`
	// BackingFile is the file behind a loop device.
	BackingFile string `json:"backing_file,omitempty"`
}

// IsBlock reports whether the drive is a block device (not a virtual drive).
func (d Drive) IsBlock() bool { return d.Transport != TransportVirtual }

// Config says where to look for drives and which ones the node may write.
type Config struct {
	// SysRoot is where sysfs is mounted, "/sys" when empty. Only parsing
	// tests point it elsewhere.
	SysRoot string
	// UdevDir is the udev database, one file per device
	// (b<major>:<minor>). When empty it is /run/udev/data if SysRoot is
	// the live sysfs, else none: a fake sysfs's devices are not the
	// host's. A missing folder means no udev, which is common (imager
	// hosts without udevd, containers); discovery then uses sysfs alone.
	UdevDir string
	// VirtualDir is a folder whose regular files are virtual drives.
	VirtualDir string
	// VirtualOnly lists the virtual drives of VirtualDir and none of the
	// machine's own disks: the dev farm's node stands for a bench of its
	// own, and the host it runs on has no drive to offer it.
	VirtualOnly bool
	// SlotLabels maps a slot (or, for drives without a slot such as loop
	// and virtual drives, an id) to the label a technician reads.
	SlotLabels map[string]string
	// Allow admits drives that the default policy (removable or USB)
	// refuses, by id, slot or path.
	Allow []string
	// CacheDir is the node cache; the device holding it is never written.
	CacheDir string
}

func (c Config) sysRoot() string {
	if c.SysRoot == "" {
		return "/sys"
	}
	return c.SysRoot
}

// realSys reports whether SysRoot is the live sysfs, so that /dev
// describes the same devices.
func (c Config) realSys() bool { return c.sysRoot() == "/sys" }

func (c Config) udevDir() string {
	if c.UdevDir == "" && c.realSys() {
		return "/run/udev/data"
	}
	return c.UdevDir
}

// fileConfig is the node config file.
type fileConfig struct {
	Slots         map[string]string `json:"slots"`
	Allow         []string          `json:"allow"`
	VirtualDrives string            `json:"virtual_drives"`
	CacheDir      string            `json:"cache_dir"`
}

// LoadConfig reads a node config file:
//
//	{"slots": {"<slot>": "bench 3, port 12"}, "allow": ["<id|slot|path>"],
//	 "virtual_drives": "DIR", "cache_dir": "DIR"}
//
// Every key is optional; keys it does not know are left for other parts of
// the node.
func LoadConfig(path string) (Config, error) {
	b, err := userpath.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("node config: %w", err)
	}
	var fc fileConfig
	if err := json.Unmarshal(b, &fc); err != nil {
		return Config{}, fmt.Errorf("node config %s: %w", path, err)
	}
	for slot, label := range fc.Slots {
		if err := ident.SlotLabel(label); err != nil {
			return Config{}, fmt.Errorf("node config %s: slot %s: %w", path, ident.Quote(slot), err)
		}
	}
	return Config{SlotLabels: fc.Slots, Allow: fc.Allow, VirtualDir: fc.VirtualDrives, CacheDir: fc.CacheDir}, nil
}
