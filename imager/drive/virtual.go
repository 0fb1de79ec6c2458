package drive

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// VirtualID is the id of the virtual drive whose file is called name:
// "virt-" and the name, when the name is a valid id; otherwise the name
// made safe and a hash of it, so that two names that are made safe alike
// ("key 1.img" and "key_1.img", or two names all in Unicode) are still two
// ids, whichever files are next to them.
func VirtualID(name string) string {
	id := "virt-" + sanitize(name)
	if sanitize(name) != name {
		id += "-" + shortHash(name)
	}
	return fitID(id)
}

// discoverVirtual lists the regular files of dir as virtual drives. Only
// regular files count: a symlink to /dev/sda there must not become a
// drive that the policy admits without --allow. Hidden files are left out
// so that editors and lock files do not show up as drives.
func discoverVirtual(dir string) ([]Drive, error) {
	if dir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("virtual drives: %w", err)
	}
	var drives []Drive
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			continue // removed meanwhile, or empty: nothing to write
		}
		// The serial is the file's inode: a file replaced under the same
		// name is another key in the same slot, as a real key would be.
		st, _ := fi.Sys().(*syscall.Stat_t)
		drives = append(drives, Drive{
			ID: VirtualID(e.Name()), Path: path, Name: e.Name(), Size: fi.Size(),
			Serial:           fmt.Sprintf("VIRT%X-%X", st.Dev, st.Ino),
			LogicalBlockSize: 512, PhysicalBlockSize: 4096, Model: "virtual drive",
			Transport: TransportVirtual, ReadOnly: unix.Access(path, unix.W_OK) != nil,
		})
	}
	return drives, nil
}
