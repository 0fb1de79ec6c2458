package deployenv

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// ResetTools are the programs the reset engine (deployenv/reset) runs, from
// Debian's wimtools, ntfs-3g and libhivex-bin (hivexget is a bash script
// around hivexsh).
var ResetTools = []string{"wimlib-imagex", "mkntfs", "ntfslabel", "ntfsls", "ntfscat", "ntfs-3g", "hivexget", "hivexsh"}

// ResetModules are the kernel modules the reset tools need: fuse, for the
// ntfs-3g mounts the restore and stage steps make.
var ResetModules = []string{"fuse"}

// libDirs are where the dynamic linker of a Debian x86-64 system finds
// shared libraries without an ld.so.cache, in its order.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// toolFiles are the host files that programs need to run in the deploy
// environment: each program (found on PATH), the interpreter of a script,
// the ELF interpreter and every shared library its DT_NEEDED entries name,
// recursively, as the dynamic linker would resolve them. It never runs a
// program (no ldd), so a build is the same on any host with the same
// packages. The map is path in the environment → host file.
func toolFiles(programs []string) (map[string]string, error) {
	files := map[string]string{}
	for _, name := range programs {
		host, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("reset tool %s: %w (install wimtools, ntfs-3g and libhivex-bin)", name, err)
		}
		if err := addProgram(files, host); err != nil {
			return nil, fmt.Errorf("reset tool %s: %w", name, err)
		}
	}
	return files, nil
}

// addProgram adds the file at path (as the environment names it) and what
// it needs.
func addProgram(files map[string]string, path string) error {
	if _, ok := files[path]; ok {
		return nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	files[path] = real
	head := make([]byte, 256)
	f, err := os.Open(real)
	if err != nil {
		return err
	}
	n, _ := f.Read(head)
	f.Close()
	if bytes.HasPrefix(head[:n], []byte("#!")) {
		line, _, _ := strings.Cut(string(head[2:n]), "\n")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return fmt.Errorf("%s: a script without an interpreter", path)
		}
		return addProgram(files, fields[0])
	}
	return addELF(files, real)
}

// addELF adds the ELF interpreter and the shared libraries of an ELF file.
func addELF(files map[string]string, real string) error {
	f, err := elf.Open(real)
	if err != nil {
		return fmt.Errorf("%s: not a script or an ELF file: %w", real, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("%s: ELF interpreter: %w", real, err)
			}
			if err := addProgram(files, strings.TrimRight(string(b), "\x00")); err != nil {
				return err
			}
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: shared libraries: %w", real, err)
	}
	for _, lib := range needed {
		p, err := findLib(lib)
		if err != nil {
			return fmt.Errorf("%s: %w", real, err)
		}
		if err := addProgram(files, p); err != nil {
			return err
		}
	}
	return nil
}

// findLib is the first libDirs entry that holds a shared library.
func findLib(soname string) (string, error) {
	for _, dir := range libDirs {
		p := filepath.Join(dir, soname)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("shared library %s is in none of %s", soname, strings.Join(libDirs, ", "))
}

// addTools puts programs and what they need into the archive, in a stable
// order, with their host permissions' execute bits.
func (a *initramfs) addTools(programs []string) error {
	files, err := toolFiles(programs)
	if err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		data, err := os.ReadFile(files[p])
		if err != nil {
			return err
		}
		a.file(strings.TrimPrefix(p, "/"), data, 0o755)
	}
	return nil
}
