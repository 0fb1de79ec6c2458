package netboot

import (
	"debug/pe"
	"errors"
	"fmt"
	"strings"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// WinPE is a WinPE the service boots through iPXE and wimboot, for
// Windows deploys that must run DISM and bcdboot. wimboot is not in Debian
// and the project does not ship it: the operator supplies it.
type WinPE struct {
	// ID names these files in URLs: a digest's hex, shortened (1 to 64 of
	// a-z and 0-9).
	ID string
	// Wimboot is the wimboot binary (CheckWimboot).
	Wimboot string
	// Files are what iPXE hands wimboot, in order, by name: BCD, boot.sdi,
	// boot.wim, then the files wimboot injects into WinPE's
	// X:\Windows\System32 (startnet.cmd, deploy.cmd, ...).
	Files []WinPEFile
}

// WinPEFile is one file iPXE loads for wimboot.
type WinPEFile struct {
	Name string // as wimboot sees it: BCD, boot.sdi, boot.wim, startnet.cmd
	Path string
}

// ErrNotWimboot is a --wimboot file that is not a wimboot binary.
var ErrNotWimboot = errors.New("netboot: not a wimboot binary")

// CheckWimboot refuses a file that cannot be wimboot: wimboot is an x86
// EFI application (PE, which iPXE also loads on BIOS), so anything without
// that header (a script, an HTML page saved instead of the binary, a
// Linux kernel) is refused before a laptop tries it.
func CheckWimboot(path string) error {
	f, err := userpath.Open(path)
	if err != nil {
		return fmt.Errorf("wimboot: %w", err)
	}
	defer f.Close()
	pf, err := pe.NewFile(f)
	if err != nil {
		return fmt.Errorf("wimboot %s: no PE header (%v): download wimboot from https://ipxe.org/wimboot: %w", path, err, ErrNotWimboot)
	}
	sub := uint16(0)
	switch h := pf.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		sub = h.Subsystem
	case *pe.OptionalHeader32:
		sub = h.Subsystem
	}
	if m := pf.Machine; m != pe.IMAGE_FILE_MACHINE_AMD64 && m != pe.IMAGE_FILE_MACHINE_I386 || sub != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		return fmt.Errorf("wimboot %s: a PE for machine %#x, subsystem %d, not an x86 EFI application: download wimboot from https://ipxe.org/wimboot: %w",
			path, pf.Machine, sub, ErrNotWimboot)
	}
	return nil
}

// check refuses a WinPE whose wimboot, files or names the service cannot
// serve.
func (w *WinPE) check() error {
	if err := checkVersionID(w.ID); err != nil {
		return fmt.Errorf("WinPE id: %w", err)
	}
	if err := CheckWimboot(w.Wimboot); err != nil {
		return err
	}
	if len(w.Files) == 0 {
		return errors.New("WinPE: no files: wimboot needs at least boot.wim")
	}
	for _, f := range w.Files {
		if _, err := checkWord(f.Name); err != nil || strings.Contains(f.Name, "/") || f.Name == "wimboot" {
			return fmt.Errorf("WinPE file name %q: want a file name such as boot.wim", f.Name)
		}
		if err := userpath.CheckFile(f.Path); err != nil {
			return fmt.Errorf("WinPE file %s: %w", f.Name, err)
		}
	}
	return nil
}

// file is the path of the WinPE file name (wimboot or one of Files).
func (w *WinPE) file(name string) (string, bool) {
	if name == "wimboot" {
		return w.Wimboot, true
	}
	for _, f := range w.Files {
		if f.Name == name {
			return f.Path, true
		}
	}
	return "", false
}

// names are the names of Files, in order, for the script.
func (w *WinPE) names() []string {
	out := make([]string, len(w.Files))
	for i, f := range w.Files {
		out[i] = f.Name
	}
	return out
}
