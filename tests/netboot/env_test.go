package netboot_test

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// bootEnv is what every lab needs: imagefarm, a catalog holding the
// deploy environment, the key it is signed with, and the signed chain.
type bootEnv struct {
	imagefarm string // static: the boot service, and the environment's /init
	store     string // file:// catalog with envRef, signed
	trusted   string // the public key it is signed with
	env       string // the environment's folder, as build-env wrote it
	localDisk string // a disk whose MBR prints localMarker and exits QEMU
	espDisk   string // a disk whose EFI system partition's BOOTX64.EFI does the same
	shim      string
	grub      string
}

// envRef is the deploy environment in the labs' catalog.
const envRef = "deploy-env:1"

// localMarker is what the local disk's MBR prints.
const localMarker = "IMAGEFARM-LOCAL-DISK"

// OVMF's firmware and variables, plain and with Microsoft's keys enrolled
// (Debian's ovmf package).
const (
	ovmfCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfCodeSB = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	ovmfVarsSB = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// runE2E is -e2e: the labs boot VMs for about 4 minutes, so a plain go
// test ./... skips them; scripts/test.sh gives it, as for tests/e2e.
var runE2E = flag.Bool("e2e", false, "boot the VMs of the network boot labs (about 4 minutes); without it they skip (scripts/test.sh gives -e2e)")

var (
	envOnce sync.Once
	env     bootEnv
	envErr  string
)

// getEnv builds (once for all tests) and finds what the labs need, and
// fails the test naming what is missing and how to get it; without -e2e
// it skips the test.
func getEnv(t *testing.T) bootEnv {
	t.Helper()
	if !*runE2E {
		t.Skip("the VM labs run only with -e2e: go test -race -count=1 ./tests/netboot/ -e2e (scripts/test.sh runs them)")
	}
	testenv.RequireRoot(t)
	testenv.Tool(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.Tool(t, "dnsmasq", "dnsmasq-base")
	testenv.DebianKernel(t)
	for file, pkg := range map[string]string{ovmfCode: "ovmf", ovmfVarsSB: "ovmf", "/usr/lib/ipxe/ipxe.efi": "ipxe", "/usr/lib/ipxe/undionly.kpxe": "ipxe"} {
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("%s: %v: install Debian's %s (scripts/test.sh does)", file, err, pkg)
		}
	}
	envOnce.Do(func() { envErr = buildEnv() })
	if envErr != "" {
		t.Fatal(envErr)
	}
	return env
}

// buildEnv builds imagefarm static, as a depot does, and with it the
// deploy environment, pushed signed to a file catalog.
func buildEnv() string {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err.Error()
	}
	signed := os.Getenv("IMAGEFARM_SIGNED_BOOT")
	if signed == "" {
		signed = filepath.Join(root, ".cache", "signed-boot")
	}
	env.shim = filepath.Join(signed, "usr/lib/shim/shimx64.efi.signed")
	env.grub = filepath.Join(signed, "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
	for _, p := range []string{env.shim, env.grub} {
		if _, err := os.Stat(p); err != nil {
			return p + ": the signed boot chain (Debian's shim-signed and grub-efi-amd64-signed) unpacked into " + signed +
				": run scripts/test.sh, or set IMAGEFARM_SIGNED_BOOT to a folder where they are unpacked (dpkg-deb -x)"
		}
	}
	dir, err := os.MkdirTemp("", "imagefarm-netboot-")
	if err != nil {
		return err.Error()
	}
	env.imagefarm = filepath.Join(dir, "imagefarm")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", env.imagefarm, "./cmd/imagefarm")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "go build imagefarm: " + err.Error() + "\n" + string(out)
	}
	env.store = "file://" + filepath.Join(dir, "store")
	env.env = filepath.Join(dir, "env")
	keys := filepath.Join(dir, "keys")
	env.trusted = filepath.Join(keys, "signing.pub")
	for _, args := range [][]string{
		{"key", "init", "--out", keys},
		{"--store", env.store, "netboot", "build-env", "--out", env.env, "--push", envRef, "--sign-key", filepath.Join(keys, "signing.key")},
	} {
		if out, err := exec.Command(env.imagefarm, args...).CombinedOutput(); err != nil {
			return "imagefarm " + args[0] + ": " + err.Error() + "\n" + string(out)
		}
	}
	env.localDisk = filepath.Join(dir, "local-disk.img")
	if err := os.WriteFile(env.localDisk, mbrDisk(), 0o644); err != nil {
		return err.Error()
	}
	esp, err := espDisk()
	if err != nil {
		return "the UEFI local disk: " + err.Error()
	}
	env.espDisk = filepath.Join(dir, "esp-disk.img")
	if err := os.WriteFile(env.espDisk, esp, 0o644); err != nil {
		return err.Error()
	}
	return ""
}

// kernel and initrd are the deploy environment's files.
func (e bootEnv) kernel() string { return filepath.Join(e.env, deployenv.KernelFile) }
func (e bootEnv) initrd() string { return filepath.Join(e.env, deployenv.InitrdFile) }

// mbrDisk is a 1 MiB disk whose boot sector writes localMarker to COM1 and
// ends QEMU through its isa-debug-exit port (0xf4): what "boots its local
// disk" looks like from outside.
func mbrDisk() []byte {
	code := []byte{
		0xfa,       // cli
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xbe, 0x1a, 0x7c, // mov si, 0x7c1a (the message)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1)
		0xac,       // loop: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz done
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp loop
		0xb0, 0x00, // done: mov al, 0
		0xe6, 0xf4, // out 0xf4, al (QEMU exits, status 1)
		0xf4,       // hlt
		0xeb, 0xfd, // jmp hlt
	}
	disk := make([]byte, 1<<20)
	copy(disk, append(code, "\r\n"+localMarker+"\r\n\x00"...))
	disk[510], disk[511] = 0x55, 0xaa
	return disk
}
