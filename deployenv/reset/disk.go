package reset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/storage/gpt"
)

// disk is the whole disk of a reset and the devices of its partitions.
type disk struct {
	path  string
	table *gpt.Table
	parts []Partition
	loops []*os.File // loop devices this disk attached, detached by close
	devs  map[int]dev
}

// dev is a partition's device and whether it was opened for writing.
type dev struct {
	path  string
	write bool
}

// openDisk reads the GPT of the whole disk at path.
func openDisk(path string) (*disk, error) {
	t, err := gpt.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (a reset needs a GPT disk with EFI, MSR, Windows and recovery partitions)", ErrLayout, err)
	}
	d := &disk{path: path, table: t}
	for _, p := range t.Partitions {
		d.parts = append(d.parts, Partition{Number: p.Number, Type: p.Type, GUID: p.GUID, Name: p.Name, Start: p.Start, Size: p.Size})
	}
	return d, nil
}

// close detaches the loop devices the disk attached.
func (d *disk) close() {
	for _, l := range d.loops {
		l.Close() // autoclear: the last close detaches
	}
	d.loops = nil
}

// device returns a device reading partition p: the kernel's partition
// device when it has one at p's offset and size, else a loop device over
// the disk, read-only unless write. A partition has one device from its
// first writable one on, so that nothing reads stale cached blocks.
func (d *disk) device(p Partition, write bool) (string, error) {
	if got, ok := d.devs[p.Number]; ok && (got.write || !write) {
		return got.path, nil
	}
	path, ok := kernelPartition(d.path, p)
	if !ok {
		var err error
		if path, err = d.attachLoop(p, write); err != nil {
			return "", err
		}
	}
	if d.devs == nil {
		d.devs = map[int]dev{}
	}
	d.devs[p.Number] = dev{path: path, write: write}
	return path, nil
}

// kernelPartition finds the kernel's device for p in sysfs.
func kernelPartition(diskPath string, p Partition) (string, bool) {
	real, err := filepath.EvalSymlinks(diskPath)
	if err != nil || !strings.HasPrefix(real, "/dev/") {
		return "", false
	}
	sys := filepath.Join("/sys/class/block", filepath.Base(real))
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		n, err1 := readSysInt(filepath.Join(sys, e.Name(), "partition"))
		start, err2 := readSysInt(filepath.Join(sys, e.Name(), "start"))
		size, err3 := readSysInt(filepath.Join(sys, e.Name(), "size"))
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if n == int64(p.Number) && start*512 == p.Start && size*512 == p.Size {
			return "/dev/" + e.Name(), true
		}
	}
	return "", false
}

func readSysInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// attachLoop attaches a loop device over p's bytes of the disk. It is
// autocleared: it goes when the disk closes it (or the process dies).
func (d *disk) attachLoop(p Partition, write bool) (string, error) {
	mode, flags := os.O_RDONLY, uint32(unix.LO_FLAGS_READ_ONLY|unix.LO_FLAGS_AUTOCLEAR)
	if write {
		mode, flags = os.O_RDWR, unix.LO_FLAGS_AUTOCLEAR
	}
	backing, err := os.OpenFile(d.path, mode, 0)
	if err != nil {
		return "", fmt.Errorf("open disk for partition %d: %w", p.Number, err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("partition %d: no kernel partition device and no loop devices: %w", p.Number, err)
	}
	defer ctl.Close()
	for range 20 { // another process may take the free device first
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		l, err := os.OpenFile(dev, mode, 0)
		if err != nil {
			return "", fmt.Errorf("open %s: %w", dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Offset, cfg.Info.Sizelimit, cfg.Info.Flags = uint64(p.Start), uint64(p.Size), flags
		err = unix.IoctlLoopConfigure(int(l.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			l.Close()
			continue
		}
		if err != nil {
			l.Close()
			return "", fmt.Errorf("attach %s to partition %d: %w", dev, p.Number, err)
		}
		d.loops = append(d.loops, l)
		return dev, nil
	}
	return "", fmt.Errorf("attach a loop device to partition %d: every free device was taken first", p.Number)
}
