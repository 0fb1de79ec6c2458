package initproc

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imagefarm/imagefarm/imager/drive"
)

// How long the disks are waited for. Disk drivers probe after their
// module has loaded (NVMe namespaces, SCSI scans), and usb-storage waits
// a second (delay_use) before it scans a USB disk; there is no udev to
// say when all that is done.
const (
	settleEvery = 250 * time.Millisecond
	settleQuiet = time.Second      // the list unchanged for this long
	settleMost  = 10 * time.Second // then the list is what it is
	wantMost    = 30 * time.Second // for the disk the plan names
)

// settledDrives lists the device's disks once the list has not changed
// for a second and no USB mass-storage device is still waiting for its
// scan, and the disk want names (if any) is there; or, failing that,
// after settleMost (wantMost when a disk is wanted). A disk that
// appears later is not in the list.
func settledDrives(ctx context.Context, sysRoot string, want *Want) ([]drive.Drive, error) {
	most := settleMost
	if want != nil {
		most = wantMost
	}
	start, quiet := time.Now(), time.Duration(0)
	var prev string
	for {
		drives, err := drive.Discover(drive.Config{SysRoot: sysRoot})
		if err != nil {
			return nil, err
		}
		if cur := listKey(drives); cur == prev {
			quiet += settleEvery
		} else {
			prev, quiet = cur, 0
		}
		settled := quiet >= settleQuiet && !usbPending(sysRoot) && (want == nil || hasSerial(drives, want.Serial))
		if settled || time.Since(start) >= most || ctx.Err() != nil {
			return drives, nil
		}
		time.Sleep(settleEvery)
	}
}

func listKey(drives []drive.Drive) string {
	var ids []string
	for _, d := range drives {
		ids = append(ids, d.ID+"="+strconv.FormatInt(d.Size, 10))
	}
	return strings.Join(ids, ",")
}

func hasSerial(drives []drive.Drive, serial string) bool {
	return slices.ContainsFunc(drives, func(d drive.Drive) bool { return d.Serial == serial })
}

// usbPending reports whether a USB mass-storage interface (class 08)
// that a driver has bound (usb-storage, uas) has no SCSI disk under it
// yet. A card reader without a card still has its disk, of size 0.
func usbPending(sysRoot string) bool {
	ifaces, _ := filepath.Glob(filepath.Join(sysRoot, "bus/usb/devices/*:*"))
	for _, i := range ifaces {
		if attr(i, "bInterfaceClass") != "08" {
			continue
		}
		if _, err := filepath.EvalSymlinks(filepath.Join(i, "driver")); err != nil {
			continue // no driver for it: nothing will scan it
		}
		if disks, _ := filepath.Glob(filepath.Join(i, "host*", "target*", "*", "block", "*")); len(disks) == 0 {
			return true
		}
	}
	return false
}
