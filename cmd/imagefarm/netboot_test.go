package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// netbootFiles writes stand-ins for the iPXE binaries and a deploy
// environment and returns the flags that serve them on 127.0.0.1 with DHCP
// off, the iPXE chain for UEFI.
func netbootFiles(t *testing.T) []string {
	serve, env := netbootArgs(t)
	return append(serve, env...)
}

// netbootArgs is netbootFiles's flags in two parts: the service's, and the
// deploy environment's (--kernel, --initramfs).
func netbootArgs(t *testing.T) (serve, env []string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"ipxe/undionly.kpxe": "bios ipxe", "ipxe/ipxe.efi": "uefi ipxe", "vmlinuz": "kernel", "initramfs": "initramfs"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"netboot", "serve", "--dhcp", "off", "--addr", "127.0.0.1", "--ipxe-dir", filepath.Join(dir, "ipxe"), "--uefi-chain", "ipxe"},
		[]string{"--kernel", filepath.Join(dir, "vmlinuz"), "--initramfs", filepath.Join(dir, "initramfs")}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestNetbootServe runs imagefarm netboot serve and boots two machines
// through it the way iPXE would: the one given with --deploy gets the
// deploy environment with the --kernel-arg arguments, the other its local
// disk, and TFTP serves iPXE.
func TestNetbootServe(t *testing.T) {
	httpPort, tftpPort := freeTCPPort(t), freeUDPPort(t)
	args := append(netbootFiles(t), "--http-port", fmt.Sprint(httpPort), "--tftp-port", fmt.Sprint(tftpPort),
		"--deploy", "52-54-00-12-34-56", "--kernel-arg", "console=ttyS0")
	p := startCLI(t, args...)
	p.waitFor(t, "boot service ready")
	get := func(path string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	deploy := get("/plan.ipxe?mac=52-54-00-12-34-56&arch=bios")
	if !strings.Contains(deploy, fmt.Sprintf("kernel http://127.0.0.1:%d/files/local/vmlinuz initrd=initramfs console=ttyS0 BOOTIF=01-52-54-00-12-34-56 || goto local", httpPort)) {
		t.Errorf("the --deploy machine's script:\n%s\nwant its deploy", deploy)
	}
	if local := get("/plan.ipxe?mac=52-54-00-00-00-01&arch=uefi"); strings.Contains(local, "kernel") || !strings.HasSuffix(local, "\nexit 1\n") {
		t.Errorf("another machine's script:\n%s\nwant its local disk", local)
	}
	if got := get("/files/initramfs"); got != "initramfs" {
		t.Errorf("/files/initramfs = %q", got)
	}
	c, _ := tftp.NewClient(fmt.Sprintf("127.0.0.1:%d", tftpPort))
	c.SetTimeout(2 * time.Second)
	wt, err := c.Receive("undionly.kpxe", "octet")
	var b bytes.Buffer
	if err == nil {
		_, err = wt.WriteTo(&b)
	}
	if err != nil || b.String() != "bios ipxe" {
		t.Errorf("TFTP undionly.kpxe = %q, %v", b.String(), err)
	}
	// The server logs a transfer once the client's last ACK is in, which
	// can be after the client has all the bytes.
	for _, want := range []string{"boot planned", `action=deploy`, `msg="tftp sent" path="\"undionly.kpxe\"" client=127.0.0.1 bytes=9`} {
		p.waitFor(t, want)
	}
}

// TestNetbootServeEnvFromCatalog: --env serves the deploy environment that
// build-env pushed, fetched into --env-cache and checked; without trusted
// keys, for an unknown name, an image of another kind or beside --kernel it
// is refused and nothing is served.
func TestNetbootServeEnvFromCatalog(t *testing.T) {
	testenv.DebianKernel(t)
	store := "--store=file://" + t.TempDir()
	mustRun(t, store, "netboot", "build-env", "--init", testenv.StaticProgram(t), "--push", "deploy:1")
	mustRun(t, store, "image", "push", "disk:1", writeDiskImage(t, 1<<20, 5))
	serve, _ := netbootArgs(t)
	base := append(serve, store)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--env", "deploy:1"}, "no trusted keys for --env and --winpe: pass --trusted-keys FILE"},
		{[]string{"--env", "nothing:1", "--allow-unsigned"}, "not found: nothing:1"},
		{[]string{"--env", "disk:1", "--allow-unsigned"}, "it is a disk; build one with imagefarm netboot build-env --push"},
		{[]string{"--env", "deploy:1", "--allow-unsigned", "--kernel", "/boot/vmlinuz"}, "--env and --kernel/--initramfs both name the deploy environment"},
		{[]string{"--env", "deploy:1", "--trusted-keys", trustedKey(t)}, "signature"},
	} {
		out, err := run(t, append(append([]string{}, base...), tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("netboot serve %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	cache := filepath.Join(t.TempDir(), "new", "env-cache") // made by the service
	httpPort := freeTCPPort(t)
	p := startCLI(t, append(base, "--env", "deploy:1", "--allow-unsigned", "--env-cache", cache,
		"--http-port", fmt.Sprint(httpPort), "--tftp-port", fmt.Sprint(freeUDPPort(t)), "--deploy", "52:54:00:12:34:56")...)
	p.waitFor(t, "boot service ready")
	initrds, _ := filepath.Glob(filepath.Join(cache, "*", "initrd"))
	if len(initrds) != 1 {
		t.Fatalf("--env-cache holds %v, want one environment's initrd", initrds)
	}
	want, err := os.ReadFile(initrds[0])
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/files/initramfs", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got, _ := io.ReadAll(resp.Body); !bytes.Equal(got, want) {
		t.Errorf("/files/initramfs is %d bytes, want the fetched environment's %d", len(got), len(want))
	}
	if !p.said(`msg="deploy environment" ref=deploy:1 digest=sha256:`)() {
		t.Errorf("the service did not say which environment it serves:\n%s", p.out)
	}
}

// trustedKey makes a signing key and returns its public key file.
func trustedKey(t *testing.T) string {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "keys")
	mustRun(t, "key", "init", "--out", keys)
	return filepath.Join(keys, "signing.pub")
}

// TestNetbootServeBadFlags: each bad flag is named with what it wants, and
// nothing is served.
func TestNetbootServeBadFlags(t *testing.T) {
	base := netbootFiles(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dhcp", "on"}, `--dhcp: DHCP mode "on": want proxy`},
		{[]string{"--dhcp-range", "198.18.0.10-198.18.0.20"}, "--dhcp-range, --dhcp-router and --dhcp-dns are for --dhcp full, not --dhcp off"},
		{[]string{"--dhcp", "full", "--interface", "lo", "--addr", "", "--dhcp-range", "127.0.0.10"}, `--dhcp-range "127.0.0.10": want FIRST-LAST`},
		{[]string{"--dhcp", "full", "--interface", "lo", "--addr", "", "--dhcp-range", "127.0.0.10-x"}, `--dhcp-range "127.0.0.10-x": want FIRST-LAST`},
		{[]string{"--dhcp", "full", "--interface", "lo", "--addr", "", "--dhcp-range", "127.0.0.10-127.0.0.20", "--dhcp-router", "::1"}, `--dhcp-router "::1": want an IPv4 address`},
		{[]string{"--dhcp", "full", "--interface", "lo", "--addr", "", "--dhcp-range", "10.0.0.10-10.0.0.20"}, "not inside the interface's subnet 127.0.0.0/8"},
		{[]string{"--addr", "fe80::1"}, `--addr "fe80::1": want an IPv4 address`},
		{[]string{"--uefi-chain", "shim"}, `--uefi-chain: chain "shim": want signed`},
		{[]string{"--chain", "52:54:00:12:34=ipxe"}, `--chain: MAC address "52:54:00:12:34": want six hex bytes`},
		{[]string{"--chain", "52:54:00:12:34:56=grub"}, `--chain 52:54:00:12:34:56: chain "grub"`},
		{[]string{"--deploy", "nope"}, `--deploy: MAC address "nope"`},
		{[]string{"--kernel", "", "--deploy", "52:54:00:12:34:56"}, "--deploy boots the deploy environment: give it with --env NAME:VERSION (from the catalog), or --kernel FILE and --initramfs FILE"},
		{[]string{"--controller", "127.0.0.1:1", "--insecure", "--deploy", "52:54:00:12:34:56"}, "and --controller both choose which machines deploy: give one"},
		{[]string{"--controller", "127.0.0.1:1", "--insecure", "--initramfs", ""}, "--controller plans deploys: give the deploy environment with --env NAME:VERSION (from the catalog), or --kernel FILE and --initramfs FILE"},
		{[]string{"--controller", "127.0.0.1:1", "--insecure", "--device-controller", "ctl.lan:7443;reboot"}, `--device-controller: kernel argument "imagefarm.controller=ctl.lan:7443;reboot" has ';'`},
		{[]string{"--controller", "127.0.0.1:1", "--insecure", "--device-controller", "ctl.lan"}, `--device-controller "ctl.lan": want HOST:PORT`},
		{[]string{"--kernel-arg", "init=/bin/sh;reboot"}, `kernel argument "init=/bin/sh;reboot" has ';'`},
		{[]string{"--uefi-ipxe", "ipxe.pxe"}, `UEFI iPXE binary "ipxe.pxe": want ipxe.efi or snponly.efi`},
		{[]string{"--ipxe-dir", t.TempDir()}, "undionly.kpxe: stat"},
		{[]string{"--uefi-chain", "signed", "--shim", "/nonexistent/shimx64.efi"}, "install Debian's shim-signed and grub-efi-amd64-signed, or give UEFI clients the ipxe chain"},
		{[]string{"--dhcp", "proxy", "--addr", ""}, "no interface: name the network interface DHCP is served on"},
		{[]string{"--dhcp-lease", "0s"}, `--dhcp-lease "0s": want 1m0s or more`},
	} {
		args := append(append([]string{}, base...), tc.args...)
		out, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}

// TestNetbootServeFollowsTheEnvChannel: netboot serve --env NAME:CHANNEL
// serves the version the channel names; once build-env --push moves the
// channel to a new version, the service fetches it into --env-cache and
// the next boots' scripts load it, without a restart, while the files of
// the version a boot in progress started with are still served.
func TestNetbootServeFollowsTheEnvChannel(t *testing.T) {
	testenv.DebianKernel(t)
	store := "--store=file://" + t.TempDir()
	initA := testenv.StaticProgram(t)
	initB := filepath.Join(t.TempDir(), "init-b")
	data, err := os.ReadFile(initA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initB, append(data, "another build"...), 0o755); err != nil { // another version's bytes
		t.Fatal(err)
	}
	mustRun(t, store, "netboot", "build-env", "--init", initA, "--push", "deploy:1", "--channel", "stable")
	serve, _ := netbootArgs(t)
	cache := filepath.Join(t.TempDir(), "env-cache")
	httpPort := freeTCPPort(t)
	p := startCLI(t, append(serve, store, "--env", "deploy:stable", "--allow-unsigned", "--env-cache", cache, "--env-check", "200ms",
		"--http-port", fmt.Sprint(httpPort), "--tftp-port", fmt.Sprint(freeUDPPort(t)), "--deploy", "52:54:00:12:34:56")...)
	p.waitFor(t, "boot service ready")
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	envOf := func() string {
		m := regexp.MustCompile(`/files/([0-9a-f]+)/initramfs `).FindSubmatch(get("/plan.ipxe?mac=52-54-00-12-34-56&arch=bios"))
		if m == nil {
			t.Fatal("the plan script loads no versioned initramfs")
		}
		return string(m[1])
	}
	first := envOf()
	before := get("/files/" + first + "/initramfs")
	mustRun(t, store, "netboot", "build-env", "--init", initB, "--push", "deploy:2", "--channel", "stable")
	var second string
	testenv.Eventually(t, 30*time.Second, "the next boot's script to load the new version", func() bool {
		second = envOf()
		return second != first
	})
	initrds, _ := filepath.Glob(filepath.Join(cache, second+"*", "initrd"))
	if len(initrds) != 1 {
		t.Fatalf("--env-cache has no folder of the new version %s", second)
	}
	want, err := os.ReadFile(initrds[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := get("/files/" + second + "/initramfs"); !bytes.Equal(got, want) || bytes.Equal(got, before) {
		t.Errorf("the new version's initramfs is %d bytes, want the fetched %d, unlike the first version's", len(got), len(want))
	}
	if got := get("/files/" + first + "/initramfs"); !bytes.Equal(got, before) {
		t.Errorf("the first version's initramfs changed under a boot in progress")
	}
	if !p.said(`msg="deploy environment updated: the next boots get it" ref=deploy:stable`)() {
		t.Errorf("the service did not log the update:\n%s", p.out)
	}
}
