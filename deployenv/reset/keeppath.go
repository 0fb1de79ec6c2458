package reset

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// keepRoot is the folder of the keep capture, beside the applied image
// until restore moves its contents into place.
const keepRoot = ".imagefarm-keep"

// keepPaths is the keep-list of a plan, each path checked and cleaned.
func keepPaths(p Plan) ([]string, error) {
	if p.Refresh {
		if len(p.Keep) > 0 || len(p.USBPackages) > 0 {
			return nil, fmt.Errorf("%w: a refresh keeps nothing, but the plan lists %d keep paths and %d USB packages: drop them or make it a reset", ErrBadInput, len(p.Keep), len(p.USBPackages))
		}
		return nil, nil
	}
	paths := append([]string(nil), KeepList...)
	for _, k := range p.Keep {
		c, err := cleanKeepPath(k)
		if err != nil {
			return nil, err
		}
		paths = append(paths, c)
	}
	return paths, nil
}

// cleanKeepPath checks that a keep path names something inside the
// volume: relative, no "." or ".." element, no drive, stream or control
// character, and nothing wimlib's capture configuration reads specially.
func cleanKeepPath(k string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: keep path %q %s: give a path relative to the Windows volume's root, like ProgramData/Corp/settings.xml", ErrBadInput, k, why)
	}
	p := strings.ReplaceAll(k, `\`, "/")
	switch {
	case strings.TrimSpace(p) == "":
		return bad("is empty")
	case strings.HasPrefix(p, "/") || len(p) >= 2 && p[1] == ':':
		return bad("is absolute")
	case strings.ContainsAny(p, ":\"\x7f") || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 }):
		return bad(`holds a colon, a double quote or a control character`)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." || e == "." {
			return bad("escapes the volume (. or ..)")
		}
		if e == "" {
			return bad("has an empty element")
		}
	}
	top := strings.Split(p, "/")[0]
	switch {
	case strings.EqualFold(top, keepRoot):
		return bad("names the reset's own folder")
	case strings.EqualFold(top, "Users"):
		return bad("is under Users: a reset removes user profiles")
	case !strings.Contains(p, "/") || strings.ContainsAny(top, "*?"):
		return bad("would keep a whole top-level folder of the old volume over the image's")
	}
	return path.Clean(p), nil
}

// checkUSBPackage checks a .ppkg from a USB key: a regular file (not a
// link), named *.ppkg with nothing a volume path cannot hold.
func checkUSBPackage(f string) error {
	st, err := os.Lstat(f)
	if err != nil {
		return fmt.Errorf("%w: USB package: %w", ErrBadInput, err)
	}
	name := filepath.Base(f)
	if !st.Mode().IsRegular() || !strings.EqualFold(filepath.Ext(name), ".ppkg") {
		return fmt.Errorf("%w: USB package %s is not a regular .ppkg file", ErrBadInput, f)
	}
	if _, err := cleanKeepPath("Recovery/Customizations/" + name); err != nil {
		return err
	}
	return nil
}

// checkStage checks that a stage folder holds only folders and regular
// files, before anything is written.
func checkStage(dir string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: stage folder %s is not a folder", ErrBadInput, dir)
	}
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: stage folder: %w", ErrBadInput, err)
		}
		if !e.IsDir() && !e.Type().IsRegular() {
			return fmt.Errorf("%w: stage folder %s: %s is not a folder or a regular file (links are not staged)", ErrBadInput, dir, p)
		}
		return nil
	})
}
