package netboot_test

import (
	"compress/gzip"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// bootEnv is what every lab needs: the imagefarm binary, the kernel and
// initramfs the VMs deploy, firmware and the signed chain.
type bootEnv struct {
	imagefarm string
	kernel    string
	initramfs string
	localDisk string // a disk whose MBR prints localMarker and exits QEMU
	shim      string
	grub      string
}

// Markers the VMs print on their serial console.
const (
	initMarker  = "IMAGEFARM-TEST-INIT"
	localMarker = "IMAGEFARM-LOCAL-DISK"
)

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
	envDir  string
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
	for name, pkg := range map[string]string{"qemu-system-x86_64": "qemu-system-x86", "dnsmasq": "dnsmasq-base", "cpio": "cpio", "ip": "iproute2"} {
		testenv.Tool(t, name, pkg)
	}
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

func buildEnv() string {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err.Error()
	}
	if envDir, err = os.MkdirTemp("", "imagefarm-netboot-"); err != nil {
		return err.Error()
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		return "no /boot/vmlinuz-*: install Debian's linux-image-amd64 (scripts/test.sh does)"
	}
	sort.Strings(kernels)
	env.kernel = kernels[len(kernels)-1]
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
	env.imagefarm = filepath.Join(envDir, "imagefarm")
	if out, err := exec.Command("go", "build", "-o", env.imagefarm, filepath.Join(root, "cmd", "imagefarm")).CombinedOutput(); err != nil {
		return "go build imagefarm: " + err.Error() + "\n" + string(out)
	}
	if msg := buildInitramfs(root); msg != "" {
		return msg
	}
	env.localDisk = filepath.Join(envDir, "local-disk.img")
	if err := os.WriteFile(env.localDisk, mbrDisk(), 0o644); err != nil {
		return err.Error()
	}
	return ""
}

// buildInitramfs builds testdata/init as /init of a gzipped newc cpio.
func buildInitramfs(root string) string {
	tree := filepath.Join(envDir, "initramfs")
	for _, d := range []string{"dev", "proc", "sys"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return err.Error()
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(tree, "init"), "./tests/netboot/testdata/init")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "go build the test /init: " + err.Error() + "\n" + string(out)
	}
	cpio := exec.Command("cpio", "--quiet", "-o", "-H", "newc")
	cpio.Dir = tree
	cpio.Stdin = strings.NewReader("init\ndev\nproc\nsys\n")
	archive, err := cpio.Output()
	if err != nil {
		return "cpio: " + err.Error()
	}
	env.initramfs = filepath.Join(envDir, "initramfs.gz")
	f, err := os.Create(env.initramfs)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	if _, err := zw.Write(archive); err != nil {
		return err.Error()
	}
	if err := zw.Close(); err != nil {
		return err.Error()
	}
	return ""
}

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
