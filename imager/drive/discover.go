package drive

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// skipRe names block devices that are never imaging targets: RAM-backed
// (zram, ram), stacked (dm, md, drbd, bcache), optical, floppy, network and
// the eMMC boot and RPMB areas.
var skipRe = regexp.MustCompile(`^(zram|ram|dm-|md|drbd|bcache|sr|fd|nbd|rbd|mmcblk\d+(boot|rpmb))`)

// Discover lists the whole disks of the node (unless cfg.VirtualOnly) and
// the virtual drives of cfg.VirtualDir, sorted by kind then kernel name. Partitions, stacked
// and RAM devices, empty card readers and unbound loop devices are left
// out. A device that disappears while it is read is skipped. Where a
// udev database runs (cfg.UdevDir) it completes what sysfs does not say;
// see fillFromUdev for which source wins.
func Discover(cfg Config) ([]Drive, error) {
	return discover(cfg, cfg.udevDir())
}

// discover is Discover reading the udev database in udevDir, none if "".
func discover(cfg Config, udevDir string) ([]Drive, error) {
	var drives []Drive
	if !cfg.VirtualOnly {
		var err error
		if drives, err = discoverBlock(cfg, udevDir); err != nil {
			return nil, err
		}
	}
	virt, err := discoverVirtual(cfg.VirtualDir)
	if err != nil {
		return nil, err
	}
	drives = append(drives, virt...)
	uniqueIDs(drives)
	for i := range drives {
		drives[i].ID = fitID(drives[i].ID)
		drives[i].SlotLabel = labelOf(drives[i], cfg)
	}
	slices.SortFunc(drives, compareDrives)
	return drives, nil
}

// discoverBlock lists the whole disks of /sys/block that are imaging
// targets.
func discoverBlock(cfg Config, udevDir string) ([]Drive, error) {
	ents, err := os.ReadDir(filepath.Join(cfg.sysRoot(), "block"))
	if err != nil {
		return nil, fmt.Errorf("discover drives: %w", err)
	}
	slots := byPathSlots(cfg)
	var drives []Drive
	for _, e := range ents {
		if skipRe.MatchString(e.Name()) {
			continue
		}
		d, ok, err := readBlock(cfg, e.Name(), slots, udevDir)
		if err != nil {
			return nil, fmt.Errorf("discover drives: %w", err)
		}
		if ok {
			drives = append(drives, d)
		}
	}
	return drives, nil
}

// compareDrives puts block devices first, in kernel order (sdz before
// sdaa), then virtual drives by file name.
func compareDrives(a, b Drive) int {
	if a.IsBlock() != b.IsBlock() {
		if a.IsBlock() {
			return -1
		}
		return 1
	}
	if a.IsBlock() {
		return cmp.Or(cmp.Compare(len(a.Name), len(b.Name)), cmp.Compare(a.Name, b.Name))
	}
	return cmp.Compare(a.Name, b.Name)
}

// readBlock reads one disk from /sys/block; ok is false for a disk that
// is no imaging target or that vanished while it was read. slots maps
// kernel names to /dev/disk/by-path names where udev made them; udevDir
// is the udev database, none if "".
func readBlock(cfg Config, name string, slots map[string]string, udevDir string) (d Drive, ok bool, err error) {
	dir := filepath.Join(cfg.sysRoot(), "block", name)
	devNum, err := os.ReadFile(filepath.Join(dir, "dev"))
	if vanished(err) {
		return Drive{}, false, nil
	} else if err != nil {
		return Drive{}, false, fmt.Errorf("read %s: %w", name, err)
	}
	devPath, err := filepath.EvalSymlinks(dir)
	if vanished(err) || attr(dir, "hidden") == "1" || attrInt(dir, "size") == 0 {
		return Drive{}, false, nil // hidden: an NVMe multipath leg, reached through its head
	} else if err != nil {
		return Drive{}, false, fmt.Errorf("read %s: %w", name, err)
	}
	d = Drive{
		Path: "/dev/" + name, Name: name, DevNum: clean(string(devNum)),
		Size:             attrInt(dir, "size") * 512, // sysfs counts 512-byte sectors whatever the block size
		LogicalBlockSize: int(cmp.Or(attrInt(dir, "queue/logical_block_size"), 512)),
		Removable:        attr(dir, "removable") == "1",
		ReadOnly:         attr(dir, "ro") == "1",
		Transport:        transportOf(name, devPath),
	}
	d.PhysicalBlockSize = int(cmp.Or(attrInt(dir, "queue/physical_block_size"), int64(d.LogicalBlockSize)))
	if d.Transport == TransportLoop {
		return d, readLoop(dir, &d), nil
	}
	readIdentity(dir, devPath, &d)
	udev := readUdev(udevDir, d.DevNum)
	if !fillFromUdev(&d, udev) {
		udev = nil
	}
	// The slot udev gave /dev/disk/by-path, then the one it computed
	// (ID_PATH, where no rules made the links), then sysfs's derivation.
	d.Slot = cmp.Or(slots[name], clean(udev["ID_PATH"]), slotOf(name, devPath))
	if d.Slot == "" && d.Transport == TransportNVMe {
		d.Slot = nvmeControllerSlot(dir, name) // multipath head: the slot is its controller's
	}
	d.ID = blockID(d, scsiLUN(devPath))
	return d, true, nil
}

// nvmeControllerSlot finds the slot of a native-multipath NVMe namespace,
// whose sysfs path is under the virtual nvme-subsystem, through its first
// controller.
func nvmeControllerSlot(dir, name string) string {
	ctrls, _ := filepath.Glob(filepath.Join(dir, "device", "nvme[0-9]*"))
	for _, c := range ctrls {
		if p, err := filepath.EvalSymlinks(c); err == nil {
			return slotOf(name, p)
		}
	}
	return ""
}

// readLoop fills what identifies a loop device: its backing file. An
// unbound loop device has none and is not a drive.
func readLoop(dir string, d *Drive) bool {
	backing := attr(dir, "loop/backing_file")
	if backing == "" {
		return false
	}
	d.BackingFile = backing
	d.Model = "loop"
	// The inode tells apart two files that had the same name in turn.
	// Discovery stays passive: opening the device for LOOP_GET_STATUS64
	// would know the inode for sure, but would also turn another
	// process's detach into a deferred one while it is open.
	var st unix.Stat_t
	if unix.Stat(backing, &st) != nil {
		st = unix.Stat_t{} // deleted, or not in this mount namespace: the path alone
	}
	d.ID = "loop-" + shortHash(fmt.Sprintf("%s\x00%d:%d", backing, st.Dev, st.Ino))
	return true
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// blockID builds the stable id of a disk the way udev's by-id names read:
// transport, then vendor_model_serial. A bridge that reports no serial is
// named by its WWN, else by its slot, else (unstable, but honest) by its
// kernel name.
func blockID(d Drive, lun int) string {
	prefix := string(d.Transport)
	if d.Transport == TransportSATA {
		prefix = "ata"
	}
	switch {
	case d.Serial != "":
		id := prefix + "-" + sanitize(strings.Join(nonEmpty(d.Vendor, d.Model, d.Serial), "_"))
		if d.Transport == TransportUSB && lun > 0 { // a card reader's LUNs share its serial
			id += "-lun" + strconv.Itoa(lun)
		}
		return id
	case d.WWN != "":
		return "wwn-" + d.WWN
	case d.Slot != "":
		return "slot-" + sanitize(d.Slot)
	}
	return "dev-" + d.Name
}

func nonEmpty(ss ...string) []string {
	return slices.DeleteFunc(ss, func(s string) bool { return s == "" })
}

// unsafeRe matches what ident.DriveID does not allow in an id.
var unsafeRe = regexp.MustCompile(`[^A-Za-z0-9._:-]+`)

// sanitize makes s safe in an id: no spaces, slashes or shell characters.
func sanitize(s string) string { return strings.Trim(unsafeRe.ReplaceAllString(s, "_"), "_") }

// fitID makes id follow ident.DriveID, the rule the controller, its store
// and the CLI check drive ids with: characters it does not allow (a kernel
// name's '!', a firmware's odd WWN) become '_', and an id longer than
// ident.MaxDriveIDLen (a long file name, a long USB serial) is cut and
// ended with a hash of the whole, so that two long ids stay two ids and a
// drive keeps its id from one discovery to the next.
func fitID(id string) string {
	safe := unsafeRe.ReplaceAllString(id, "_")
	if len(safe) <= ident.MaxDriveIDLen {
		return safe
	}
	h := shortHash(id)
	return safe[:ident.MaxDriveIDLen-len(h)-1] + "-" + h
}

// uniqueIDs suffixes ids that two drives share (cheap USB keys sometimes
// carry the same serial), so that an id always names one drive.
func uniqueIDs(drives []Drive) {
	count := map[string]int{}
	for _, d := range drives {
		count[d.ID]++
	}
	for i, d := range drives {
		if count[d.ID] > 1 {
			drives[i].ID += "-" + sanitize(cmp.Or(d.Slot, d.Name))
		}
	}
}

func labelOf(d Drive, cfg Config) string {
	if d.Slot != "" {
		return cfg.SlotLabels[d.Slot]
	}
	return cfg.SlotLabels[d.ID]
}
