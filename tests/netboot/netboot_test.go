package netboot_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv/initproc"
)

// hyphen writes a MAC as BOOTIF and the service's URLs do.
func hyphen(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// The deploy environment's kernel arguments in the labs: its console on
// the serial port the tests read, and power off once it has reported.
// no_timer_check: under TCG on a loaded machine the kernel's check of the
// IO-APIC timer can fail ("MP-BIOS bug: 8254 timer not connected", then
// a hang or "IO-APIC + timer doesn't work!" and a panic); VMs skip it.
var kernelArgs = []string{"console=ttyS0", "panic=-1", "no_timer_check", "imagefarm.then=poweroff"}

// TestProxyDHCPBesideSiteDHCP boots four VMs on a LAN whose DHCP server
// (dnsmasq) knows nothing of PXE, with the boot service beside it in
// proxyDHCP mode: a BIOS VM and a UEFI VM (iPXE chain) that are listed
// for the deploy environment, and two BIOS VMs with no work, which boot
// their local disk: one whose NIC's ROM is iPXE, one whose PXE client is
// not (seabiosPXE), which gets undionly.kpxe first. Before they boot, the
// service gets malformed DHCP and TFTP packets.
func TestProxyDHCPBesideSiteDHCP(t *testing.T) {
	e := getEnv(t)
	bios := vm{name: "bios", fw: seabios, mac: "52:54:00:1f:00:01"}
	uefi := vm{name: "uefi-ipxe", fw: ovmf, mac: "52:54:00:1f:00:02"}
	local := vm{name: "bios-local", fw: seabios, mac: "52:54:00:1f:00:03", disk: e.localDisk}
	vendor := vm{name: "bios-vendor", fw: seabiosPXE, mac: "52:54:00:1f:00:06", disk: e.localDisk}
	l := newLab(t, e, labConfig{kernelArgs: append(kernelArgs, "quiet"),
		serve: []string{"--deploy", bios.mac, "--deploy", uefi.mac, "--chain", uefi.mac + "=ipxe"}})
	l.sendGarbage(t)
	runs := l.bootAll(t, bios, uefi, local, vendor)

	for _, r := range runs[:2] {
		checkDeployed(t, l, r)
	}
	ipxeEFI := fileSize(t, "/usr/lib/ipxe/ipxe.efi")
	checkTFTP(t, l, runs[1], map[string]int64{"ipxe.efi": ipxeEFI})
	// QEMU's BIOS NIC ROM is iPXE itself: it gets its script at once, and
	// nothing goes over TFTP.
	checkTFTP(t, l, runs[0], map[string]int64{})
	checkLocalDisk(t, l, runs[2])
	// A PXE ROM that is not iPXE gets undionly.kpxe over TFTP; the iPXE
	// in it asks again and gets its script.
	checkTFTP(t, l, runs[3], map[string]int64{"undionly.kpxe": fileSize(t, "/usr/lib/ipxe/undionly.kpxe")})
	checkLocalDisk(t, l, runs[3])
	checkCoexistence(t, l, runs...)
	for _, r := range runs[:4] {
		checkNoLoop(t, l, r)
	}
}

// TestSecureBootSignedChain boots a UEFI VM with Secure Boot on through
// the signed chain (shim, GRUB, Debian's kernel) into the deploy
// environment, with the boot service in proxyDHCP mode. The site's DHCP
// server names the boot service as next-server: Debian's signed GRUB
// takes its TFTP server from there. Beside it a UEFI VM with no work on
// the iPXE chain (snponly.efi: see checkUEFILocalDisk) boots its local
// disk through OVMF's boot order.
func TestSecureBootSignedChain(t *testing.T) {
	e := getEnv(t)
	sb := vm{name: "uefi-secure", fw: ovmfSecure, mac: "52:54:00:1f:00:04"}
	local := vm{name: "uefi-local", fw: ovmf, mac: "52:54:00:1f:00:07", disk: e.espDisk, noPXE6: true}
	// No "quiet": the kernel says on the console that Secure Boot is on.
	l := newLab(t, e, labConfig{nextServer: true, kernelArgs: kernelArgs,
		serve: []string{"--deploy", sb.mac, "--chain", local.mac + "=ipxe", "--uefi-ipxe", "snponly.efi"}})
	runs := l.bootAll(t, sb, local)
	checkUEFILocalDisk(t, l, runs[1], "snponly.efi")
	r := runs[0]
	checkDeployed(t, l, r)
	if _, ok := r.seen["Secure boot enabled"]; !ok {
		t.Errorf("%s: the kernel did not say \"Secure boot enabled\"", sb.name)
	}
	sizes := map[string]int64{"shimx64.efi": fileSize(t, e.shim), "grubx64.efi": fileSize(t, e.grub)}
	// The kernel and initramfs are under /env/ID/, ID naming the
	// environment's version.
	for _, s := range l.records("tftp sent", map[string]string{"client": l.leaseOf(sb.mac)}) {
		path := strings.Trim(s["path"], `"`)
		if strings.HasPrefix(path, "/env/") && strings.HasSuffix(path, "/vmlinuz") {
			sizes[path] = fileSize(t, e.kernel())
		}
		if strings.HasPrefix(path, "/env/") && strings.HasSuffix(path, "/initramfs") {
			sizes[path] = fileSize(t, e.initrd())
		}
	}
	if len(sizes) != 4 {
		t.Errorf("TFTP sent no /env/ID/vmlinuz or /env/ID/initramfs: %v", sizes)
	}
	for _, cfg := range []string{"/grub/grub.cfg", "/grub/imagefarm/" + sb.mac + ".cfg"} {
		recs := l.records("tftp sent", map[string]string{"path": fmt.Sprintf("%q", cfg)})
		if len(recs) != 1 {
			t.Fatalf("%s sent %d times, want once", cfg, len(recs))
		}
		sizes[cfg] = recs[0].bytes()
	}
	checkTFTP(t, l, r, sizes)
	checkCoexistence(t, l, runs...)
}

// bootAll boots the VMs side by side and returns their runs in order.
func (l *lab) bootAll(t *testing.T, vms ...vm) []*run {
	t.Helper()
	runs := make([]*run, len(vms))
	var wg sync.WaitGroup
	for i, v := range vms {
		tap := l.ns.AddTap(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = l.boot(t, v, tap, initproc.ReportPrefix, localMarker, "Secure boot enabled")
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return runs
}

// report is the deploy environment's report on r's console.
func report(t *testing.T, r *run) initproc.Report {
	t.Helper()
	i := strings.Index(r.console, initproc.ReportPrefix)
	if i < 0 {
		t.Fatalf("%s (%s): no report from the deploy environment on its console:\n%s", r.vm.name, r.vm.fw, r.console)
	}
	line, _, _ := strings.Cut(r.console[i+len(initproc.ReportPrefix):], "\n")
	var rep initproc.Report
	if err := json.Unmarshal([]byte(strings.TrimRight(line, "\r")), &rep); err != nil {
		t.Fatalf("%s: report %q: %v", r.vm.name, line, err)
	}
	return rep
}

// checkDeployed checks that r's VM ran the deploy environment, which saw
// the VM's SMBIOS identity and MAC and got its address from the site's
// DHCP server, that the boot was planned with the serial iPXE read (the
// iPXE chains), and logs the chain's timings.
func checkDeployed(t *testing.T, l *lab, r *run) {
	t.Helper()
	rep := report(t, r)
	lease := l.leaseOf(r.vm.mac)
	if rep.Vendor != "HP" || rep.Product != "HP EliteBook 840 G7" || rep.Serial != r.vm.serial() ||
		!slices.ContainsFunc(rep.NICs, func(n initproc.NIC) bool { return n.MAC == r.vm.mac }) {
		t.Errorf("%s: the deploy environment reports %+v, want HP, HP EliteBook 840 G7, %s and a NIC %s", r.vm.name, rep.Identity, r.vm.serial(), r.vm.mac)
	}
	if rep.Lease == nil || rep.Lease.Address != lease+"/24" || rep.Lease.Server != siteAddr {
		t.Errorf("%s: the deploy environment's lease %+v, want %s/24 from the site's DHCP server %s", r.vm.name, rep.Lease, lease, siteAddr)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("%s: the deploy environment reports errors %q", r.vm.name, rep.Errors)
	}
	planned := l.records("boot planned", map[string]string{"mac": r.vm.mac, "action": "deploy"})
	if len(planned) != 1 {
		t.Fatalf("%s: %d deploy plans, want 1", r.vm.name, len(planned))
	}
	step := "its GRUB config"
	if r.vm.fw != ovmfSecure {
		step = "its iPXE script"
		if planned[0]["serial"] != r.vm.serial() {
			t.Errorf("%s: planned with serial %q, want %q (SMBIOS, read by iPXE)", r.vm.name, planned[0]["serial"], r.vm.serial())
		}
	}
	t.Logf("FIGURE %-12s %-17s power-on to %s %5.1fs, to the deploy environment's report %5.1fs (%s; kernel uptime at the report %.1fs)",
		r.vm.name, r.vm.fw, step, planned[0].time().Sub(r.start).Seconds(), r.seen[initproc.ReportPrefix].Seconds(), accel(), rep.Uptime)
}

// checkTFTP checks that exactly the files in want went to r's VM over
// TFTP, each whole and once, and logs the bytes.
func checkTFTP(t *testing.T, l *lab, r *run, want map[string]int64) {
	t.Helper()
	got := map[string]int64{}
	var total int64
	for _, s := range l.records("tftp sent", map[string]string{"client": l.leaseOf(r.vm.mac)}) {
		path := strings.Trim(s["path"], `"`)
		if _, dup := got[path]; dup {
			t.Errorf("%s: %s sent twice over TFTP", r.vm.name, path)
		}
		got[path] = s.bytes()
		total += s.bytes()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: TFTP sent %v, want exactly %v", r.vm.name, got, want)
	}
	t.Logf("FIGURE %-12s TFTP %d bytes: %v", r.vm.name, total, got)
}

// checkLocalDisk checks that the VM with no work was told to boot its
// local disk and that its MBR ran. (iPXE's "Booting from SAN device" goes
// through SeaBIOS's serial console, whose last characters the MBR's own
// writes to the port can overtake: the MBR's marker is the proof.)
func checkLocalDisk(t *testing.T, l *lab, r *run) {
	t.Helper()
	if len(l.records("boot planned", map[string]string{"mac": r.vm.mac, "action": "local"})) != 1 {
		t.Errorf("%s: no local-disk plan logged", r.vm.name)
	}
	mbr, ok := r.seen[localMarker]
	if !ok || strings.Contains(r.console, initproc.ReportPrefix) {
		t.Fatalf("%s: want the MBR's %s and no deploy environment on the console:\n%s", r.vm.name, localMarker, r.console)
	}
	ip := l.leaseOf(r.vm.mac)
	for _, f := range l.records("http sent", nil) {
		if strings.HasPrefix(f["client"], ip+":") {
			t.Errorf("%s fetched %s", r.vm.name, f["path"])
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
		if !strings.Contains(r.console, ip) {
			t.Errorf("%s: its console never shows its address %s", r.vm.name, ip)
		}
	}
	answered := l.records("dhcp answered", nil)
	if len(answered) == 0 {
		t.Error("the boot service answered no DHCP request")
	}
	for _, a := range answered {
		if a["your_ip"] != "0.0.0.0" {
			t.Errorf("the boot service answered %v: a proxyDHCP answer gives no address", a)
		}
	}
}

// checkNoLoop checks that iPXE, once running, was given its script and
// fetched it once: no iPXE was sent to it again.
func checkNoLoop(t *testing.T, l *lab, r *run) {
	t.Helper()
	answers := l.records("dhcp answered", map[string]string{"mac": r.vm.mac, "kind": "ipxe"})
	for _, a := range answers {
		if !strings.HasPrefix(a["boot_file"], "http://"+serviceAddr+":8080/boot.ipxe?mac="+hyphen(r.vm.mac)) {
			t.Errorf("%s: iPXE was answered with %q, want its script", r.vm.name, a["boot_file"])
		}
	}
	scripts := l.records("http sent script", map[string]string{"mac": r.vm.mac, "path": "/plan.ipxe"})
	if len(answers) == 0 || len(scripts) != 1 {
		t.Errorf("%s: %d DHCP answers to iPXE, %d plan scripts; want some and exactly one", r.vm.name, len(answers), len(scripts))
	}
}

// checkHTTPBoot checks that r's VM booted once through UEFI HTTP boot:
// the boot service answered its firmware (vendor class HTTPClient) with
// the URL of the UEFI iPXE, binary, which it fetched whole over HTTP.
func checkHTTPBoot(t *testing.T, l *lab, r *run, binary string) {
	t.Helper()
	want := "http://" + serviceAddr + ":8080/ipxe/" + binary
	answers := l.records("dhcp answered", map[string]string{"mac": r.vm.mac, "kind": "http-boot"})
	for _, a := range answers {
		if a["boot_file"] != want {
			t.Errorf("%s: its HTTP boot was answered with %q, want %q", r.vm.name, a["boot_file"], want)
		}
	}
	size := fileSize(t, "/usr/lib/ipxe/"+binary)
	var whole int
	for _, s := range l.records("http sent", map[string]string{"path": "/ipxe/" + binary}) {
		if strings.HasPrefix(s["client"], l.leaseOf(r.vm.mac)+":") && s.bytes() == size {
			whole++
		}
	}
	if len(answers) == 0 || whole != 1 {
		t.Errorf("%s: %d DHCP answers to its firmware's HTTP boot, %s fetched whole over HTTP %d times; want some and once", r.vm.name, len(answers), binary, whole)
	}
	t.Logf("FIGURE %-12s UEFI HTTP boot: %s (%d bytes) over HTTP", r.vm.name, binary, size)
}

// checkUEFILocalDisk checks the UEFI VM with no work: iPXE (binary, over
// TFTP, from its PXE boot entry) was told to boot the local disk, and its
// "exit 1" returned to the firmware, which went on down its boot order:
// its UEFI HTTP boot entry, which the boot service answers too (binary
// again, over HTTP, told the same), then the disk, whose EFI system
// partition's BOOTX64.EFI printed the marker. No deploy environment ran.
//
// Had iPXE returned success, OVMF would have stopped at its boot menu
// (it does, as UEFI says it may). Debian's ipxe.efi (2019) does not
// return to OVMF at all when it exits (the VM stays at "Press Ctrl-B"):
// the VM runs snponly.efi, which uses the firmware's NIC driver.
func checkUEFILocalDisk(t *testing.T, l *lab, r *run, binary string) {
	t.Helper()
	plans := l.records("boot planned", map[string]string{"mac": r.vm.mac})
	for _, p := range plans {
		if p["action"] != "local" {
			t.Errorf("%s: planned %v, want only local boots", r.vm.name, p)
		}
	}
	if len(plans) != 2 {
		t.Errorf("%s: %d boots planned, want 2 (its PXE boot entry, then its HTTP boot entry)", r.vm.name, len(plans))
	}
	checkTFTP(t, l, r, map[string]int64{binary: fileSize(t, "/usr/lib/ipxe/"+binary)})
	checkHTTPBoot(t, l, r, binary)
	esp, ok := r.seen[localMarker]
	if !ok || !strings.Contains(r.console, localMarker+" (EFI)") || strings.Contains(r.console, initproc.ReportPrefix) {
		t.Fatalf("%s: want its EFI system partition's %s (EFI) and no deploy environment on the console:\n%s", r.vm.name, localMarker, r.console)
	}
	t.Logf("FIGURE %-12s %-17s power-on to its local disk's BOOTX64.EFI %5.1fs (%s)", r.vm.name, r.vm.fw, esp.Seconds(), accel())
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
