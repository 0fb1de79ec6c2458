package deployenv

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/deployenv/kmod"
	"github.com/imagefarm/imagefarm/internal/userpath"
)

// DefaultModules are the kernel modules a deploy environment holds
// unless told otherwise: the network and disk drivers of the laptops a
// depot sees, and the buses they hang on (virtio for virtual machines,
// USB host controllers for USB Ethernet and USB disks, which must be
// seen to be refused). What they need is added when the environment is
// built (kmod.Resolve).
var DefaultModules = []string{
	// Ethernet: Intel I219 (e1000e) and I225/I226 (igc), Realtek
	// (r8169), USB adapters (r8152, ax88179_178a, cdc_ether, cdc_ncm),
	// QEMU's e1000 and virtio.
	"e1000e", "igc", "r8169", "r8152", "ax88179_178a", "cdc_ether", "cdc_ncm", "e1000", "virtio_net",
	// Disks: NVMe, SATA (ahci, sd_mod), USB (usb-storage, uas), virtio.
	"nvme", "ahci", "sd_mod", "usb-storage", "uas", "virtio_blk",
	// Buses.
	"virtio_pci", "xhci_pci", "ehci_pci",
}

// BuildConfig says what goes into a deploy environment.
type BuildConfig struct {
	// Kernel is the kernel and its modules (FindKernel).
	Kernel Kernel
	// Init is the program that runs as /init: a static Linux x86-64
	// executable (imagefarm built with CGO_ENABLED=0).
	Init string
	// Modules are the kernel modules to hold, by name; what they need is
	// added. DefaultModules when nil.
	Modules []string
	// Out is the folder to create with the environment's files; it must
	// not exist, and appears only once complete.
	Out string
	// CA is the farm CA's certificate file (ca.crt), put at CAFile: the
	// environment verifies the controller's TLS against it. "" for none.
	CA string
	// TrustedKeys are files of image-signing public keys (signing.pub),
	// put together at TrustedKeysFile: the environment refuses an image
	// none of them signed. None: it writes unsigned images and says so.
	TrustedKeys []string
	// ResetTools adds the reset engine's programs (ResetTools), with their
	// ELF interpreter and shared libraries, and its kernel modules
	// (ResetModules): a deploy environment that can reset devices, about
	// 15 MiB larger.
	ResetTools bool
}

// Build makes the deploy environment that cfg describes in cfg.Out and
// returns what its env.json says. Two builds from the same kernel,
// modules and init program give the same bytes.
func Build(ctx context.Context, cfg BuildConfig) (*Info, error) {
	if cfg.Modules == nil {
		cfg.Modules = DefaultModules
	}
	if cfg.ResetTools {
		cfg.Modules = append(slices.Clone(cfg.Modules), ResetModules...)
	}
	if err := checkNewFolder(cfg.Out); err != nil {
		return nil, err
	}
	if err := checkStatic(cfg.Init); err != nil {
		return nil, err
	}
	tree, err := kmod.Open(cfg.Kernel.Modules)
	if err != nil {
		return nil, err
	}
	res, err := tree.Resolve(cfg.Modules)
	if err != nil {
		return nil, err
	}
	tmp, remove, err := userpath.TempFolder(filepath.Dir(cfg.Out), "."+filepath.Base(cfg.Out)+".build-")
	if err != nil {
		return nil, fmt.Errorf("build-env: %w", err)
	}
	defer remove()
	info, err := buildInto(ctx, tmp, cfg, tree, res)
	if err != nil {
		return nil, fmt.Errorf("build-env: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("build-env: %w", err)
	}
	// RENAME_NOREPLACE: a folder made at Out meanwhile is not replaced.
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, cfg.Out, unix.RENAME_NOREPLACE); err != nil {
		return nil, fmt.Errorf("build-env: %s: %w", cfg.Out, err)
	}
	return info, nil
}

// checkNewFolder refuses an output folder that exists, or whose parent
// does not.
func checkNewFolder(dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("build-env: %s already exists: the environment is written to a new folder; give a path that does not exist: %w", dir, fs.ErrExist)
	}
	if err := userpath.CheckOutput(dir, false); err != nil {
		return fmt.Errorf("build-env: %w", err)
	}
	return nil
}

// buildInto writes the environment's files into the folder dir.
func buildInto(ctx context.Context, dir string, cfg BuildConfig, tree *kmod.Tree, res kmod.Resolution) (*Info, error) {
	info := &Info{SchemaVersion: SchemaVersion, KernelRelease: cfg.Kernel.Release, Builtin: res.Builtin, Files: map[string]FileInfo{}}
	for _, m := range res.Modules {
		info.Modules = append(info.Modules, m.Name)
	}
	a, initSum, err := rootFS(cfg, tree, res)
	if err != nil {
		return nil, err
	}
	ca, keys, trust, err := trustFiles(cfg)
	if err != nil {
		return nil, err
	}
	if ca != nil {
		a.file(CAFile, ca, 0o644)
	}
	if cfg.ResetTools {
		if err := a.addTools(ResetTools); err != nil {
			return nil, err
		}
	}
	if keys != nil {
		a.file(TrustedKeysFile, keys, 0o644)
	}
	info.Init, info.Trust = initSum, trust
	if info.Files[InitrdFile], err = writeFile(ctx, filepath.Join(dir, InitrdFile), a.write); err != nil {
		return nil, err
	}
	if info.Files[KernelFile], err = writeFile(ctx, filepath.Join(dir, KernelFile), copyFrom(cfg.Kernel.Image)); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	return info, os.WriteFile(filepath.Join(dir, InfoFile), append(data, '\n'), 0o644)
}

// rootFS puts the environment's root file system together: the init
// program, the folders it mounts on, a console, and the modules with the
// modules.dep and load order that the init reads.
func rootFS(cfg BuildConfig, tree *kmod.Tree, res kmod.Resolution) (*initramfs, FileInfo, error) {
	a := newInitramfs()
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "etc"} {
		a.dir(d)
	}
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	a.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	initData, err := os.ReadFile(cfg.Init)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("init program: %w", err)
	}
	a.file("init", initData, 0o755)
	modDir := path.Join("lib/modules", cfg.Kernel.Release)
	a.dir(modDir)
	for _, m := range res.Modules {
		data, err := tree.Read(m.Path)
		if err != nil {
			return nil, FileInfo{}, err
		}
		a.file(path.Join(modDir, kmod.Uncompressed(m.Path)), data, 0o644)
	}
	a.file(path.Join(modDir, "modules.dep"), res.DepFile(), 0o644)
	a.file(path.Join(modDir, LoadOrderFile), res.LoadOrder(), 0o644)
	sum := sha256.Sum256(initData)
	return a, FileInfo{Size: int64(len(initData)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// writeFile creates path with what write writes, hashing it, and stops
// when ctx is done.
func writeFile(ctx context.Context, path string, write func(io.Writer) error) (FileInfo, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	h := sha256.New()
	cw := &countingWriter{ctx: ctx, w: io.MultiWriter(f, h)}
	err = write(cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return FileInfo{Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func copyFrom(src string) func(io.Writer) error {
	return func(w io.Writer) error {
		f, err := userpath.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
}

// countingWriter counts what passes and fails once ctx is done, so a
// long write stops when the command is interrupted.
type countingWriter struct {
	ctx context.Context
	w   io.Writer
	n   int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrNotStatic is an init program the deploy environment cannot run.
var ErrNotStatic = errors.New("deployenv: init program is not a static Linux x86-64 executable")

// checkStatic refuses an init program that is not a static Linux x86-64
// ELF executable: the environment has no dynamic loader or libraries.
func checkStatic(file string) error {
	fh, err := userpath.Open(file)
	if err != nil {
		return fmt.Errorf("init program: %w", err)
	}
	defer fh.Close()
	f, err := elf.NewFile(fh)
	if err != nil {
		return fmt.Errorf("init program %s is not an ELF executable (%v): %w", file, err, ErrNotStatic)
	}
	if f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		return fmt.Errorf("init program %s is a %s %s, not an x86-64 executable: %w", file, f.Machine, f.Type, ErrNotStatic)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("init program %s is dynamically linked: the deploy environment has no libraries; build imagefarm with CGO_ENABLED=0: %w", file, ErrNotStatic)
		}
	}
	return nil
}
