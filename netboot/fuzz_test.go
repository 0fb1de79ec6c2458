package netboot

import (
	"context"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzDHCPHandler feeds any bytes to the DHCP handler of a proxy and a
// full service, on both ports. Whatever comes in, an answer is for the
// request's transaction and MAC, parses as DHCP, names a boot file this
// service has (or its own URLs), and from the proxy never gives an address.
func FuzzDHCPHandler(f *testing.F) {
	for _, m := range []*dhcpv4.DHCPv4{pxeDiscover(f, iana.INTEL_X86PC), pxeDiscover(f, iana.EFI_X86_64),
		pxeDiscover(f, iana.EFI_X86_64, withUserClass("iPXE")), pxeDiscover(f, iana.EFI_ARM64)} {
		f.Add(m.ToBytes(), false)
		f.Add(m.ToBytes(), true)
	}
	req := pxeDiscover(f, iana.EFI_BC)
	req.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))
	f.Add(req.ToBytes(), false)
	f.Add(req.ToBytes()[:100], false)
	proxy := proxyHandler(&testing.T{}, nil)
	full := fullHandler(&testing.T{})
	f.Fuzz(func(t *testing.T, data []byte, on4011 bool) {
		m, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		port := dhcpv4.ServerPort
		if on4011 {
			port = pxePort
		}
		for _, h := range []*dhcpHandler{proxy, full} {
			a := h.handle(m, port)
			if a.reply == nil {
				continue
			}
			checkFuzzedReply(t, h, m, a.reply)
		}
	})
}

func checkFuzzedReply(t *testing.T, h *dhcpHandler, m, r *dhcpv4.DHCPv4) {
	t.Helper()
	if _, err := dhcpv4.FromBytes(r.ToBytes()); err != nil {
		t.Fatalf("the reply does not parse: %v", err)
	}
	if r.TransactionID != m.TransactionID || r.ClientHWAddr.String() != m.ClientHWAddr.String() {
		t.Fatalf("reply for xid %s MAC %s, request xid %s MAC %s", r.TransactionID, r.ClientHWAddr, m.TransactionID, m.ClientHWAddr)
	}
	if h.mode == DHCPProxy && !r.YourIPAddr.IsUnspecified() {
		t.Fatalf("proxy reply gives address %s", r.YourIPAddr)
	}
	file := r.BootFileName
	ok := slices.Contains([]string{"undionly.kpxe", "shimx64.efi", "ipxe.efi", base + "/ipxe/ipxe.efi"}, file) ||
		strings.HasPrefix(file, base+"/boot.ipxe?mac="+hyphenMAC(m.ClientHWAddr)+"&arch=")
	if file == "" {
		ok = h.mode == DHCPFull // an address (or a NAK) for a client that is not booting
	}
	if !ok {
		t.Fatalf("%s reply names boot file %q", h.mode, file)
	}
}

// FuzzTFTPPath asks for any path: what is served is one of the configured
// files or a generated GRUB config, never anything else on disk.
func FuzzTFTPPath(f *testing.F) {
	for _, p := range []string{"undionly.kpxe", "/grubx64.efi", "grub/grub.cfg", "grub/imagefarm/52:54:00:12:34:56.cfg",
		"../etc/passwd", "grub/imagefarm/../../vmlinuz", "/vmlinuz", "grub/imagefarm/.cfg", "\x00", "env/local/initramfs",
		"env/local/../../vmlinuz", "env/other/vmlinuz", "env//vmlinuz"} {
		f.Add(p)
	}
	var log logBuffer
	s, err := New(loopbackConfig(&testing.T{}, newBootFiles(&testing.T{}).files, &log))
	if err != nil {
		f.Fatal(err)
	}
	configured, want := map[string]bool{}, maps.Clone(s.tftp)
	for _, p := range s.tftp {
		configured[p] = true
	}
	env, _ := s.envs.current()
	for _, name := range []string{"vmlinuz", "initramfs"} { // the deploy environment's, by name and by version
		p, _ := env.fileFor(name)
		want[name], want[envFilePrefix+env.ID+"/"+name], configured[p] = p, p, true
	}
	f.Fuzz(func(t *testing.T, path string) {
		src, _, err := s.tftpSource(context.Background(), path, Client{})
		if err != nil {
			return
		}
		defer src.Close()
		name := strings.TrimPrefix(path, "/")
		switch v := src.(type) {
		case *os.File:
			if !configured[v.Name()] || want[name] != v.Name() {
				t.Fatalf("path %q opened %s, which is not the boot file of that name", path, v.Name())
			}
		default:
			mac, found := strings.CutPrefix(strings.TrimSuffix(name, ".cfg"), grubMachineDir)
			if _, err := ParseMAC(mac); name != "grub/grub.cfg" && (!found || err != nil || !strings.HasSuffix(name, ".cfg")) {
				t.Fatalf("path %q gave a generated file", path)
			}
		}
	})
}

// FuzzScriptRendering renders the plan script and the GRUB config for any
// plan a planner could return (local, deploy, WinPE, or an action no
// planner has): a plan that fails its check becomes the local disk, and
// whatever the plan, every line is one the template wrote: no value added
// a line, a command or an expansion. WinPE loads wimboot over iPXE only.
func FuzzScriptRendering(f *testing.F) {
	f.Add([]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}, true, uint8(1), "job j1", "imagefarm.token=abc", "console=ttyS0")
	f.Add([]byte{1, 2, 3, 4, 5, 6}, false, uint8(0), "x\nshell", "a b", "${x}")
	f.Add([]byte{1, 2, 3, 4, 5, 6}, true, uint8(1), "'; exit; '", "x;reboot", "a&&b")
	f.Add([]byte{1, 2, 3, 4, 5, 6}, false, uint8(2), "winpe for job j2", "x", "y")
	f.Add([]byte{1, 2, 3, 4, 5, 6}, true, uint8(2), "boot.wim\nshell", "x", "y")
	f.Add([]byte{1, 2, 3, 4, 5, 6}, true, uint8(9), "unknown action", "x", "y")
	var log logBuffer
	cfg := loopbackConfig(&testing.T{}, newBootFiles(&testing.T{}).files, &log)
	cfg.WinPE, _ = testWinPE(&testing.T{})
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mac []byte, efi bool, action uint8, reason, arg1, arg2 string) {
		if len(mac) != 6 {
			return
		}
		p := &recordingPlanner{plan: Plan{Action: Action(action), Reason: reason, Args: []string{arg1, arg2}}}
		s.cfg.Planner = p // the fuzz function runs one input at a time
		client := Client{MAC: mac, Arch: ArchBIOS, Chain: ChainIPXE}
		if efi {
			client.Arch = ArchUEFI
		}
		valid := p.plan.check() == nil
		deploy, winpe := valid && p.plan.Action == BootDeploy, valid && p.plan.Action == BootWinPE
		script, err := s.script(context.Background(), client)
		if err != nil {
			t.Fatalf("script: %v", err)
		}
		checkLines(t, string(script), deploy || winpe, reason, []string{"#!ipxe", "echo ", "kernel ", "initrd ", "boot ", ":local", "sanboot ", "exit"})
		if hasWimboot := strings.Contains(string(script), "/wimboot || goto local\n"); hasWimboot != winpe {
			t.Fatalf("wimboot loaded: %v, want %v:\n%s", hasWimboot, winpe, script)
		}
		client.Chain = ChainSigned
		grub, err := s.grubConfig(context.Background(), client)
		if err != nil {
			t.Fatalf("grub config: %v", err)
		}
		checkLines(t, string(grub), deploy, reason, []string{"set timeout=0", "echo '", "linux ", "initrd ", "boot", "exit"})
		if strings.Count(string(grub), "'") != 2*strings.Count(string(grub), "echo '") {
			t.Fatalf("grub config has a quote of its own:\n%s", grub)
		}
	})
}

// checkLines checks that every line of out starts as one of the template's
// lines do, that a deploy has its kernel line exactly when it should, and
// that nothing but the template opened an expansion.
func checkLines(t *testing.T, out string, deploy bool, reason string, starts []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines {
		if !slices.ContainsFunc(starts, func(s string) bool { return strings.HasPrefix(l, s) }) {
			t.Fatalf("line %q is not one the template writes (reason %q):\n%s", l, reason, out)
		}
	}
	hasKernel := strings.Contains(out, "\nkernel ") || strings.Contains(out, "\nlinux ")
	if hasKernel != deploy {
		t.Fatalf("kernel line: %v, want %v:\n%s", hasKernel, deploy, out)
	}
	if strings.Contains(out, "$") {
		t.Fatalf("script has '$':\n%s", out)
	}
	if len(lines) > 16 {
		t.Fatalf("script has %d lines:\n%s", len(lines), out)
	}
}
