package reset

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/storage/gpt"
)

// The paths preflight looks for, matched without regard to case.
const (
	systemHive = "Windows/System32/config/SYSTEM"
	winrePath  = "Recovery/WindowsRE/Winre.wim"
)

// Preflight checks that plan can reset its disk, writing nothing: the
// disk's layout, WinRE, the hybrid join, the keep paths and the image.
func Preflight(ctx context.Context, plan Plan) (*Layout, error) {
	scratch, cleanup, err := scratchDir(plan)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	d, err := openDisk(plan.Disk)
	if err != nil {
		return nil, err
	}
	defer d.close()
	if err := checkPlan(ctx, plan); err != nil {
		return nil, err
	}
	return preflight(ctx, plan, d, scratch)
}

// preflight is Preflight on an open disk, for a plan checkPlan passed.
func preflight(ctx context.Context, p Plan, d *disk, scratch string) (*Layout, error) {
	l := &Layout{SectorSize: d.table.SectorSize}
	win, err := findWindows(ctx, p, d)
	if err != nil {
		return nil, err
	}
	for _, part := range d.parts {
		part.Role = role(part, win)
		l.Partitions = append(l.Partitions, part)
		if part.Number == win.Number {
			l.Windows = part
		}
	}
	if l.WinRE, err = findWinRE(ctx, d, l.Partitions); err != nil {
		return nil, err
	}
	if p.Hybrid {
		return nil, fmt.Errorf("%w: the device record says it is joined to Active Directory and Azure AD", ErrHybridJoined)
	}
	dev, err := d.device(l.Windows, false)
	if err != nil {
		return nil, err
	}
	hive, err := ntfsFind(ctx, dev, systemHive)
	if err != nil {
		return nil, volumeErr(l.Windows, err)
	}
	j, err := readJoins(ctx, dev, hive, scratch)
	switch {
	case err != nil:
		l.Registry = "SYSTEM hive unreadable, joins taken from the device record: " + err.Error()
	case j.hybrid():
		return nil, fmt.Errorf("%w: %s", ErrHybridJoined, j)
	default:
		l.Registry = j.String()
	}
	if l.Label, err = ntfsLabel(ctx, dev); err != nil {
		return nil, volumeErr(l.Windows, err)
	}
	if l.Profiles, err = profiles(ctx, dev); err != nil {
		return nil, volumeErr(l.Windows, err)
	}
	if l.Untouched, err = hashOthers(ctx, d, l.Partitions); err != nil {
		return nil, err
	}
	return l, nil
}

// checkPlan checks what a plan names before the disk is read.
func checkPlan(ctx context.Context, p Plan) error {
	if p.State == nil {
		return fmt.Errorf("%w: no State: the keep-list must be saved somewhere before the volume is re-created", ErrBadInput)
	}
	if _, err := keepPaths(p); err != nil {
		return err
	}
	for _, u := range p.USBPackages {
		if err := checkUSBPackage(u); err != nil {
			return err
		}
	}
	for _, s := range p.Stage {
		if err := checkStage(s); err != nil {
			return err
		}
	}
	if p.Index < 1 {
		return fmt.Errorf("%w: image index %d: WIM images count from 1 (wimlib-imagex info lists them)", ErrBadInput, p.Index)
	}
	if p.OpenImage != nil {
		return nil
	}
	if _, err := tool(ctx, nil, "wimlib-imagex", "info", p.Image, fmt.Sprint(p.Index)); err != nil {
		return fmt.Errorf("%w: image %s index %d: %w", ErrBadInput, p.Image, p.Index, err)
	}
	return nil
}

// role names what a partition is to a reset.
func role(p, win Partition) string {
	switch {
	case p.Number == win.Number:
		return "windows"
	case p.Type == gpt.TypeEFISystem:
		return "efi"
	case p.Type == gpt.TypeMSR:
		return "msr"
	case p.Type == gpt.TypeWindowsRecovery:
		return "recovery"
	}
	return "data"
}

// findWindows finds the Windows partition: the one plan names, else the
// one basic-data partition whose NTFS volume holds a SYSTEM hive.
func findWindows(ctx context.Context, p Plan, d *disk) (Partition, error) {
	var found []Partition
	var unreadable []error
	for _, part := range d.parts {
		if p.Partition != 0 && part.Number != p.Partition || p.Partition == 0 && part.Type != gpt.TypeBasicData {
			continue
		}
		if r := role(part, Partition{}); r != "data" {
			return Partition{}, fmt.Errorf("%w: partition %d is the %s partition (%s), which a reset never writes: name the Windows partition", ErrLayout, part.Number, r, gpt.TypeName(part.Type))
		}
		dev, err := d.device(part, false)
		if err != nil {
			return Partition{}, err
		}
		if _, err := ntfsFind(ctx, dev, systemHive); errors.Is(err, errNoPath) {
			continue
		} else if err != nil {
			unreadable = append(unreadable, volumeErr(part, err))
			continue
		}
		found = append(found, part)
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return Partition{}, fmt.Errorf("%w: %d partitions hold Windows: name the one to reset (Partition)", ErrLayout, len(found))
	case len(unreadable) > 0:
		return Partition{}, fmt.Errorf("no readable Windows partition, nothing written: %w", errors.Join(unreadable...))
	case p.Partition != 0:
		return Partition{}, fmt.Errorf("%w: partition %d holds no %s (or is not on the disk)", ErrLayout, p.Partition, systemHive)
	}
	return Partition{}, fmt.Errorf("%w: no basic-data partition holds %s", ErrLayout, systemHive)
}

// volumeErr is a Windows volume ntfs-3g could not read.
func volumeErr(p Partition, err error) error {
	return fmt.Errorf("%w: partition %d (%s) is not a readable NTFS volume: %w; check it with chkdsk from Windows, or wipe the disk whole", ErrVolume, p.Number, p.Name, err)
}

// findWinRE finds the WinRE image on a partition other than Windows:
// Recovery/WindowsRE/Winre.wim on an NTFS partition, or a WIM at the root
// of a partition of the recovery type; a WIM is a file starting MSWIM.
func findWinRE(ctx context.Context, d *disk, parts []Partition) (string, error) {
	for _, part := range parts {
		if part.Role == "windows" || part.Role == "efi" || part.Role == "msr" {
			continue
		}
		dev, err := d.device(part, false)
		if err != nil {
			return "", err
		}
		candidates := []string{winrePath}
		if part.Role == "recovery" {
			candidates = append(candidates, "Winre.wim")
		}
		for _, c := range candidates {
			p, err := ntfsFind(ctx, dev, c)
			if err != nil {
				continue // not NTFS, or not there
			}
			if magic, err := ntfsRead(ctx, dev, p, 8); err == nil && string(magic) == "MSWIM\x00\x00\x00" {
				return fmt.Sprintf("%d:%s", part.Number, p), nil
			}
		}
	}
	return "", fmt.Errorf("%w: no partition but Windows holds %s (a WIM); reimage the whole disk with a layout that has a recovery partition", ErrNotSupported, winrePath)
}

// profiles lists the user profiles on the old volume: the folders of
// Users but the ones Windows makes for every machine.
func profiles(ctx context.Context, dev string) ([]string, error) {
	users, err := ntfsFind(ctx, dev, "Users")
	if errors.Is(err, errNoPath) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	names, err := ntfsList(ctx, dev, users)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		switch strings.ToLower(n) {
		case "default", "default user", "all users", "public", "desktop.ini":
			continue
		}
		out = append(out, users+"/"+n)
	}
	return out, nil
}
