package deployenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// Kernel is a kernel image and the modules built for it.
type Kernel struct {
	// Image is the kernel (a bzImage: /boot/vmlinuz-RELEASE).
	Image string
	// Release is what uname -r says under it, read from the image.
	Release string
	// Modules is its modules folder, /lib/modules/RELEASE.
	Modules string
}

// FindKernel returns the kernel at image, or, when image is "", the
// newest /boot/vmlinuz-* (Debian's linux-image-amd64 puts it there),
// with its modules in modules, or, when modules is "",
// /lib/modules/RELEASE. Its release is read from the image's own header,
// not its file name, and its modules folder must hold modules.dep.
func FindKernel(image, modules string) (Kernel, error) {
	if image == "" {
		var err error
		if image, err = newestKernel("/boot"); err != nil {
			return Kernel{}, err
		}
	}
	release, err := kernelRelease(image)
	if err != nil {
		return Kernel{}, err
	}
	if modules == "" {
		modules = filepath.Join("/lib/modules", release)
	}
	k := Kernel{Image: image, Release: release, Modules: modules}
	if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s (release %s): its modules are not in %s (%w): install the modules of that kernel, or pass --modules-dir",
			image, release, k.Modules, err)
	}
	return k, nil
}

// newestKernel returns the vmlinuz-* in dir with the highest version.
func newestKernel(dir string) (string, error) {
	kernels, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(kernels) == 0 {
		return "", fmt.Errorf("no kernel in %s (vmlinuz-*): install Debian's linux-image-amd64, or pass --kernel FILE", dir)
	}
	return slices.MaxFunc(kernels, compareVersions), nil
}

// ErrNotKernel is a file that is not an x86 Linux kernel image.
var ErrNotKernel = errors.New("deployenv: not a Linux kernel image (bzImage)")

// kernelRelease reads the release from a bzImage's setup header: the
// boot protocol's kernel_version field points at a string that starts
// with it ("6.1.0-57-amd64 (debian-kernel@...) #1 SMP ...").
func kernelRelease(image string) (string, error) {
	f, err := userpath.Open(image)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x8000)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("kernel %s: %w", image, err)
	}
	hdr = hdr[:n]
	if len(hdr) < 0x210 || string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("kernel %s: %w", image, ErrNotKernel)
	}
	off := int(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	if off >= len(hdr) {
		return "", fmt.Errorf("kernel %s: its version string is past the setup header: %w", image, ErrNotKernel)
	}
	s, _, _ := bytes.Cut(hdr[off:], []byte{0})
	release, _, _ := strings.Cut(string(s), " ")
	if release == "" || !filepath.IsLocal(release) {
		return "", fmt.Errorf("kernel %s: release %q: %w", image, release, ErrNotKernel)
	}
	return release, nil
}

// compareVersions orders kernel file names as sort -V does, closely
// enough for one distribution's releases: runs of digits by value, the
// rest byte by byte.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		na, ra := leadingDigits(a)
		nb, rb := leadingDigits(b)
		if na != "" && nb != "" {
			if c := compareNumbers(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

func compareNumbers(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
