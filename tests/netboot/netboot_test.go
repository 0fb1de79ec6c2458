package netboot_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// hyphen writes a MAC as BOOTIF and the service's URLs do.
func hyphen(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// TestProxyDHCPBesideSiteDHCP boots three VMs on a LAN whose DHCP server
// (dnsmasq) knows nothing of PXE, with the boot service beside it in
// proxyDHCP mode: a BIOS VM and a UEFI VM (iPXE chain) that are listed
// for the deploy environment, and a BIOS VM with no work, which boots its
// local disk.
func TestProxyDHCPBesideSiteDHCP(t *testing.T) {
	e := getEnv(t)
	bios := vm{name: "bios", fw: seabios, mac: "52:54:00:1f:00:01"}
	uefi := vm{name: "uefi-ipxe", fw: ovmf, mac: "52:54:00:1f:00:02"}
	local := vm{name: "bios-local", fw: seabios, mac: "52:54:00:1f:00:03", disk: e.localDisk}
	l := newLab(t, e, labConfig{serve: []string{"--deploy", bios.mac, "--deploy", uefi.mac, "--chain", uefi.mac + "=ipxe"}})
	l.sendGarbage(t)
	runs := bootAll(t, l, bios, uefi, local)

	for _, r := range runs[:2] {
		checkDeployed(t, l, r, false)
	}
	ipxeEFI, err := os.Stat("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	checkTFTP(t, l, runs[1], map[string]int64{"ipxe.efi": ipxeEFI.Size()})
	// QEMU's BIOS NIC ROM is iPXE itself: it gets its script at once, and
	// nothing goes over TFTP.
	checkTFTP(t, l, runs[0], map[string]int64{})
	checkLocalDisk(t, l, runs[2])
	checkCoexistence(t, l, runs...)
	for _, r := range runs[:2] {
		checkNoLoop(t, l, r)
	}
}

// TestSecureBootSignedChain boots a UEFI VM with Secure Boot on through
// the signed chain (shim, GRUB, Debian's kernel) with the boot service in
// proxyDHCP mode. The site's DHCP server names the boot service as
// next-server: Debian's signed GRUB takes its TFTP server from there.
func TestSecureBootSignedChain(t *testing.T) {
	e := getEnv(t)
	sb := vm{name: "uefi-secure", fw: ovmfSecure, mac: "52:54:00:1f:00:04"}
	l := newLab(t, e, labConfig{nextServer: true, serve: []string{"--deploy", sb.mac}})
	runs := bootAll(t, l, sb)
	r := runs[0]
	checkDeployed(t, l, r, true)
	sizes := map[string]int64{"shimx64.efi": fileSize(t, e.shim), "grubx64.efi": fileSize(t, e.grub),
		"/vmlinuz": fileSize(t, e.kernel), "/initramfs": fileSize(t, e.initramfs)}
	for _, cfg := range []string{"/grub/grub.cfg", "/grub/imagefarm/" + sb.mac + ".cfg"} {
		recs := l.records("tftp sent", map[string]string{"path": fmt.Sprintf("%q", cfg)})
		if len(recs) != 1 {
			t.Fatalf("%s sent %d times, want once", cfg, len(recs))
		}
		sizes[cfg] = recs[0].bytes()
	}
	checkTFTP(t, l, r, sizes)
	checkCoexistence(t, l, r)
}

// bootAll boots the VMs side by side and returns their runs in order.
func bootAll(t *testing.T, l *lab, vms ...vm) []*run {
	t.Helper()
	runs := make([]*run, len(vms))
	var wg sync.WaitGroup
	for i, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = l.boot(t, v)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return runs
}

// checkDeployed checks that r's VM ran the deploy environment with its
// SMBIOS product and its BOOTIF, planned with the serial iPXE read (the
// iPXE chains), and logs the chain's timings.
func checkDeployed(t *testing.T, l *lab, r *run, secure bool) {
	t.Helper()
	marker, ok := r.seen(initMarker)
	if !ok {
		t.Fatalf("%s (%s): no %s on its console:\n%s", r.vm.name, r.vm.fw, initMarker, r.console.String())
	}
	line := r.console.linesWith(initMarker)[0]
	for _, want := range []string{`product="HP EliteBook 840 G7"`, "BOOTIF=01-" + hyphen(r.vm.mac), "console=ttyS0", fmt.Sprintf("secureboot=%v", secure)} {
		if !strings.Contains(line, want) {
			t.Errorf("%s: the deploy environment said %q, want %s in it", r.vm.name, line, want)
		}
	}
	planned := l.records("boot planned", map[string]string{"mac": r.vm.mac, "action": "deploy"})
	if len(planned) != 1 {
		t.Fatalf("%s: %d deploy plans, want 1", r.vm.name, len(planned))
	}
	if want := "SN-" + r.vm.name; !secure && planned[0]["serial"] != want {
		t.Errorf("%s: planned with serial %q, want %q (SMBIOS, read by iPXE)", r.vm.name, planned[0]["serial"], want)
	}
	figure(t, r, "script", planned[0].time().Sub(r.start), marker)
}

// figure logs a chain's timings and TFTP bytes for the report.
func figure(t *testing.T, r *run, step string, toPlan, toMarker time.Duration) {
	t.Logf("FIGURE %-12s %-17s power-on to %s %5.1fs, to the deploy environment's marker %5.1fs (%s)",
		r.vm.name, r.vm.fw, step, toPlan.Seconds(), toMarker.Seconds(), accel())
}

// checkTFTP checks that exactly the files in want went to r's VM over
// TFTP, each whole and once, and logs the bytes.
func checkTFTP(t *testing.T, l *lab, r *run, want map[string]int64) {
	t.Helper()
	ip := l.leaseOf(r.vm.mac)
	sent := l.records("tftp sent", map[string]string{"client": ip})
	got := map[string]int64{}
	var total int64
	for _, s := range sent {
		path, _ := unquote(s["path"])
		if _, dup := got[path]; dup {
			t.Errorf("%s: %s sent twice over TFTP", r.vm.name, path)
		}
		got[path] = s.bytes()
		total += s.bytes()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: TFTP sent %v, want exactly %v", r.vm.name, got, want)
	}
	t.Logf("FIGURE %-12s TFTP %d bytes in %d files %v", r.vm.name, total, len(got), keys(got))
}

func keys(m map[string]int64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func unquote(s string) (string, bool) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1], true
	}
	return s, false
}

// checkLocalDisk checks that the VM with no work was told to boot its
// local disk, that iPXE did (sanboot), and that its MBR ran.
func checkLocalDisk(t *testing.T, l *lab, r *run) {
	t.Helper()
	if len(l.records("boot planned", map[string]string{"mac": r.vm.mac, "action": "local"})) != 1 {
		t.Errorf("%s: no local-disk plan logged", r.vm.name)
	}
	sanboot, ok1 := r.seen("Booting from SAN device")
	mbr, ok2 := r.seen(localMarker)
	if !ok1 || !ok2 || mbr < sanboot {
		t.Fatalf("%s: want iPXE's sanboot then the MBR's %s on the console:\n%s", r.vm.name, localMarker, r.console.String())
	}
	ip := l.leaseOf(r.vm.mac)
	if fetched := l.records("http sent", map[string]string{"path": "/files/vmlinuz"}); len(fetched) > 0 {
		for _, f := range fetched {
			if strings.HasPrefix(f["client"], ip+":") {
				t.Errorf("%s fetched the kernel", r.vm.name)
			}
		}
	}
	t.Logf("FIGURE %-12s %-17s power-on to its local disk's MBR %5.1fs (%s)", r.vm.name, r.vm.fw, mbr.Seconds(), accel())
}

// checkCoexistence checks that each VM's address came from the site's
// DHCP server's range, as its firmware or iPXE reported it, and that the
// boot service offered no address to anyone.
func checkCoexistence(t *testing.T, l *lab, runs ...*run) {
	t.Helper()
	for _, r := range runs {
		ip := l.leaseOf(r.vm.mac)
		a, err := netip.ParseAddr(ip)
		if err != nil || a.As4()[3] < siteFirst || a.As4()[3] > siteLast {
			t.Errorf("%s: leased %q by the site, want an address of 198.18.0.%d-%d", r.vm.name, ip, siteFirst, siteLast)
			continue
		}
		said := r.console.linesWith(ip)
		if len(said) == 0 {
			t.Errorf("%s: its console never shows its address %s", r.vm.name, ip)
		}
	}
	answered := l.records("dhcp answered", nil)
	if len(answered) == 0 {
		t.Error("the boot service answered no DHCP request")
	}
	for _, a := range answered {
		if a["your_ip"] != "0.0.0.0" || a["port"] != "67" && a["port"] != "4011" {
			t.Errorf("the boot service answered %v: a proxyDHCP answer gives no address", a)
		}
	}
}

// checkNoLoop checks that iPXE, once running, was given its script and
// fetched it once: no iPXE was sent to it again.
func checkNoLoop(t *testing.T, l *lab, r *run) {
	t.Helper()
	ipxeAnswers := 0
	for _, a := range l.records("dhcp answered", map[string]string{"mac": r.vm.mac, "kind": "ipxe"}) {
		ipxeAnswers++
		if !strings.HasPrefix(a["boot_file"], "http://"+serviceAddr+":8080/boot.ipxe?mac="+hyphen(r.vm.mac)) {
			t.Errorf("%s: iPXE was answered with %q, want its script", r.vm.name, a["boot_file"])
		}
	}
	scripts := l.records("http sent script", map[string]string{"mac": r.vm.mac, "path": "/plan.ipxe"})
	if ipxeAnswers == 0 || len(scripts) != 1 {
		t.Errorf("%s: %d DHCP answers to iPXE, %d plan scripts, want some and exactly one", r.vm.name, ipxeAnswers, len(scripts))
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
