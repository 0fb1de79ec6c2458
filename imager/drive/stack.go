package drive

import (
	"fmt"
	"os"
	"path/filepath"
)

// member is one block device that writing a disk would overwrite or pull
// out from under its user: the disk, its partitions, and every device
// stacked on them (device-mapper, LVM, md, bcache), transitively.
type member struct {
	Name   string
	DevNum string
	// On is the member this one is stacked on ("" for the disk and its
	// partitions): dm-0 on sdb2.
	On string
}

// stackOf lists the members of disk name. Walking holders upwards from
// the disk finds the root file system on LVM on a partition, or an md
// array built from it, without resolving anything downwards.
func stackOf(sysRoot, name string) ([]member, error) {
	dir := filepath.Join(sysRoot, "block", name)
	dev := attr(dir, "dev")
	if dev == "" {
		return nil, fmt.Errorf("read %s: %w", name, ErrNotFound)
	}
	members := []member{{Name: name, DevNum: dev}}
	dirs := []string{dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	for _, e := range ents {
		pdir := filepath.Join(dir, e.Name())
		if attr(pdir, "partition") != "" {
			members = append(members, member{Name: e.Name(), DevNum: attr(pdir, "dev")})
			dirs = append(dirs, pdir)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < len(members); i++ {
		holders, _ := os.ReadDir(filepath.Join(dirs[i], "holders"))
		for _, h := range holders {
			if seen[h.Name()] {
				continue
			}
			seen[h.Name()] = true
			hdir := filepath.Join(sysRoot, "class", "block", h.Name())
			members = append(members, member{Name: h.Name(), DevNum: attr(hdir, "dev"), On: members[i].Name})
			dirs = append(dirs, hdir)
		}
	}
	return members, nil
}

// matching returns the members whose device number is in devs.
func matching(members []member, devs devNums) []member {
	var out []member
	for _, m := range members {
		if m.DevNum != "" && devs[m.DevNum] {
			out = append(out, m)
		}
	}
	return out
}
