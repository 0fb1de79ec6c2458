package netboot

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

const base = "http://127.0.0.1:8080"

// TestProxyAnswersEachFirmwareWithItsBootFile sends the DISCOVERs that each
// kind of firmware sends, through their bytes, and reads the OFFER back the
// same way.
func TestProxyAnswersEachFirmwareWithItsBootFile(t *testing.T) {
	mac := testMAC.String()
	tests := []struct {
		name   string
		cfg    func(*Config)
		req    *dhcpv4.DHCPv4
		file   string
		vendor string
	}{
		{"BIOS PXE", nil, pxeDiscover(t, iana.INTEL_X86PC), "undionly.kpxe", "PXEClient"},
		{"UEFI PXE, signed chain by default", nil, pxeDiscover(t, iana.EFI_X86_64), "shimx64.efi", "PXEClient"},
		{"UEFI PXE that says EFI BC (9)", nil, pxeDiscover(t, iana.EFI_BC), "shimx64.efi", "PXEClient"},
		{"UEFI PXE, iPXE chain for its MAC", func(c *Config) { c.Chains.Override = map[string]Chain{mac: ChainIPXE} },
			pxeDiscover(t, iana.EFI_X86_64), "ipxe.efi", "PXEClient"},
		{"UEFI PXE, iPXE chain by default, snponly", func(c *Config) { c.Chains.Default = ChainIPXE; c.Files.UEFIBinary = "snponly.efi" },
			pxeDiscover(t, iana.EFI_X86_64), "snponly.efi", "PXEClient"},
		{"UEFI PXE, iPXE by default, signed for its MAC", func(c *Config) {
			c.Chains = Chains{Default: ChainIPXE, Override: map[string]Chain{mac: ChainSigned}}
		}, pxeDiscover(t, iana.EFI_X86_64), "shimx64.efi", "PXEClient"},
		{"UEFI HTTP boot", nil, httpDiscover(t), base + "/ipxe/ipxe.efi", "HTTPClient"},
		{"iPXE on BIOS", nil, pxeDiscover(t, iana.INTEL_X86PC, withUserClass("iPXE")),
			base + "/boot.ipxe?mac=52-54-00-12-34-56&arch=bios", "PXEClient"},
		{"iPXE on UEFI, signed chain configured", nil, pxeDiscover(t, iana.EFI_X86_64, withUserClass("iPXE")),
			base + "/boot.ipxe?mac=52-54-00-12-34-56&arch=uefi", "PXEClient"},
		{"iPXE, user class as an RFC 3004 list", nil, pxeDiscover(t, iana.EFI_X86_64, withUserClass("\x04iPXE")),
			base + "/boot.ipxe?mac=52-54-00-12-34-56&arch=uefi", "PXEClient"},
		{"no option 93: arch from the vendor class", nil, noArchOption(t, pxeDiscover(t, iana.INTEL_X86PC)), "undionly.kpxe", "PXEClient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := proxyHandler(t, tt.cfg)
			a := h.handle(tt.req, dhcpv4.ServerPort)
			if a.reply == nil {
				t.Fatalf("handle = no reply (%s), want an OFFER", a.why)
			}
			r := wire(t, a.reply)
			checkProxyReply(t, tt.req, r, dhcpv4.MessageTypeOffer)
			if r.BootFileName != tt.file {
				t.Errorf("boot file = %q, want %q", r.BootFileName, tt.file)
			}
			if got := string(r.GetOneOption(dhcpv4.OptionClassIdentifier)); got != tt.vendor {
				t.Errorf("vendor class = %q, want %q", got, tt.vendor)
			}
			opt43 := r.GetOneOption(dhcpv4.OptionVendorSpecificInformation)
			if want := []byte{6, 1, 8, 255}; tt.vendor == "PXEClient" && !bytes.Equal(opt43, want) {
				t.Errorf("option 43 = %v, want %v (discovery control: boot the file named)", opt43, want)
			}
			if tt.vendor == "HTTPClient" && opt43 != nil {
				t.Errorf("option 43 = %v for an HTTP boot client, want none", opt43)
			}
		})
	}
}

// checkProxyReply checks what every proxyDHCP reply must be: of type mt,
// for the request's transaction and MAC, giving no address, naming this
// server, and echoing the client's GUID.
func checkProxyReply(t *testing.T, req, r *dhcpv4.DHCPv4, mt dhcpv4.MessageType) {
	t.Helper()
	self := net.IPv4(127, 0, 0, 1).To4()
	switch {
	case r.MessageType() != mt:
		t.Errorf("reply type = %s, want %s", r.MessageType(), mt)
	case r.OpCode != dhcpv4.OpcodeBootReply:
		t.Errorf("op = %s, want BootReply", r.OpCode)
	case r.TransactionID != req.TransactionID:
		t.Errorf("xid = %s, want the request's %s", r.TransactionID, req.TransactionID)
	case !bytes.Equal(r.ClientHWAddr, req.ClientHWAddr):
		t.Errorf("chaddr = %s, want %s", r.ClientHWAddr, req.ClientHWAddr)
	case !r.YourIPAddr.IsUnspecified():
		t.Errorf("yiaddr = %s: a proxyDHCP server gives no address", r.YourIPAddr)
	case !r.ServerIPAddr.Equal(self) || !r.ServerIdentifier().Equal(self):
		t.Errorf("siaddr %s, option 54 %s, want both %s", r.ServerIPAddr, r.ServerIdentifier(), self)
	case r.Options.Has(dhcpv4.OptionSubnetMask) || r.Options.Has(dhcpv4.OptionRouter) || r.Options.Has(dhcpv4.OptionIPAddressLeaseTime):
		t.Errorf("reply has network options %v: a proxyDHCP server leaves those to the site's server", r.Options)
	}
	if guid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(r.GetOneOption(dhcpv4.OptionClientMachineIdentifier), guid) {
		t.Errorf("option 97 = %x, want the client's %x", r.GetOneOption(dhcpv4.OptionClientMachineIdentifier), guid)
	}
}

func httpDiscover(t *testing.T) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(testMAC,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendorClass("HTTPClient", iana.EFI_X86_64_HTTP))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)))
	if err != nil {
		t.Fatal(err)
	}
	return wire(t, m)
}

func noArchOption(t *testing.T, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	m.Options.Del(dhcpv4.OptionClientSystemArchitectureType)
	return wire(t, m)
}

// TestIPXENeverGetsIPXEAgain is the boot loop: whatever iPXE says its
// firmware is, its request gets the script URL, never an iPXE binary.
func TestIPXENeverGetsIPXEAgain(t *testing.T) {
	for _, cfg := range []func(*Config){nil, func(c *Config) { c.Chains.Default = ChainIPXE }} {
		h := proxyHandler(t, cfg)
		for _, arch := range []iana.Arch{iana.INTEL_X86PC, iana.EFI_X86_64, iana.EFI_BC, iana.EFI_X86_64_HTTP} {
			for _, port := range []int{dhcpv4.ServerPort, pxePort} {
				req := pxeDiscover(t, arch, withUserClass("iPXE"))
				if port == pxePort {
					req = asRequest(t, req, net.IPv4(127, 0, 0, 1))
				}
				a := h.handle(req, port)
				if a.reply == nil || !strings.HasPrefix(a.reply.BootFileName, base+"/boot.ipxe?") {
					t.Errorf("iPXE, arch %s, port %d: answer %v (%s), want the script URL", arch, port, a.reply, a.why)
				}
			}
		}
	}
}

// asRequest turns a DISCOVER into the REQUEST that follows it, to server.
func asRequest(t *testing.T, m *dhcpv4.DHCPv4, server net.IP) *dhcpv4.DHCPv4 {
	t.Helper()
	m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	if server != nil {
		m.UpdateOption(dhcpv4.OptServerIdentifier(server))
	}
	return wire(t, m)
}

// TestProxyAnswersOnlyWhatIsItsOwn: the site's DHCP traffic, requests to
// the site's server and clients it cannot boot get no answer, each with a
// reason for the log.
func TestProxyAnswersOnlyWhatIsItsOwn(t *testing.T) {
	h := proxyHandler(t, nil)
	plain, err := dhcpv4.NewDiscovery(testMAC)
	if err != nil {
		t.Fatal(err)
	}
	reply := pxeDiscover(t, iana.INTEL_X86PC)
	reply.OpCode = dhcpv4.OpcodeBootReply
	tokenRing := pxeDiscover(t, iana.INTEL_X86PC)
	tokenRing.HWType = iana.HWTypeIEEE802
	longHW := pxeDiscover(t, iana.INTEL_X86PC)
	longHW.ClientHWAddr = append(longHW.ClientHWAddr, 1, 2)
	inform := pxeDiscover(t, iana.INTEL_X86PC)
	inform.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeInform))
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		port int
		why  string
	}{
		{"a laptop that is not netbooting", wire(t, plain), dhcpv4.ServerPort, "not a PXE client"},
		{"a reply from another server", wire(t, reply), dhcpv4.ServerPort, "not a request"},
		{"token ring", wire(t, tokenRing), dhcpv4.ServerPort, "not an Ethernet client"},
		{"a 8-byte hardware address", wire(t, longHW), dhcpv4.ServerPort, "not an Ethernet client"},
		{"a request to the site's server", asRequest(t, pxeDiscover(t, iana.INTEL_X86PC), net.IPv4(198, 18, 0, 2)), dhcpv4.ServerPort, "another DHCP server"},
		{"an inform", wire(t, inform), dhcpv4.ServerPort, "does not answer"},
		{"a DISCOVER on 4011", pxeDiscover(t, iana.EFI_X86_64), pxePort, "not a request for a boot file"},
		{"UEFI ARM64", pxeDiscover(t, iana.EFI_ARM64), dhcpv4.ServerPort, "architecture 11"},
		{"UEFI IA32", pxeDiscover(t, iana.EFI_IA32), dhcpv4.ServerPort, "architecture 6"},
		{"iPXE on ARM64", pxeDiscover(t, iana.EFI_ARM64, withUserClass("iPXE")), dhcpv4.ServerPort, "architecture 11"},
		{"an arch that is not assigned", pxeDiscover(t, iana.Arch(0x7777)), dhcpv4.ServerPort, "architecture 30583"},
		{"HTTP boot on BIOS", withVendor(t, pxeDiscover(t, iana.INTEL_X86PC), "HTTPClient"), dhcpv4.ServerPort, "not UEFI"},
		{"no arch at all", withVendor(t, noArchOption(t, pxeDiscover(t, iana.INTEL_X86PC)), "PXEClient"), dhcpv4.ServerPort, "architecture -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.handle(tt.req, tt.port)
			if a.reply != nil {
				t.Fatalf("handle = %s, want no answer", a.reply.Summary())
			}
			if !strings.Contains(a.why, tt.why) {
				t.Errorf("why = %q, want it to say %q", a.why, tt.why)
			}
		})
	}
}

func withVendor(t *testing.T, m *dhcpv4.DHCPv4, vendor string) *dhcpv4.DHCPv4 {
	m.UpdateOption(dhcpv4.OptClassIdentifier(vendor))
	return wire(t, m)
}

// TestProxyAcknowledgesRequestsToItself: a REQUEST on 4011 (PXE boot
// server discovery, EDK2 and iPXE send one) or on 67 naming this server gets
// an ACK with the boot file, still without an address.
func TestProxyAcknowledgesRequestsToItself(t *testing.T) {
	h := proxyHandler(t, nil)
	for _, port := range []int{pxePort, dhcpv4.ServerPort} {
		req := asRequest(t, pxeDiscover(t, iana.EFI_X86_64), net.IPv4(127, 0, 0, 1))
		req.ClientIPAddr = net.IPv4(198, 18, 0, 57)
		a := h.handle(wire(t, req), port)
		if a.reply == nil {
			t.Fatalf("port %d: no answer (%s), want an ACK", port, a.why)
		}
		r := wire(t, a.reply)
		checkProxyReply(t, req, r, dhcpv4.MessageTypeAck)
		if r.BootFileName != "shimx64.efi" {
			t.Errorf("port %d: boot file %q, want shimx64.efi", port, r.BootFileName)
		}
	}
}

// TestReplyGoesWhereRFC2131Says: to the relay, to the client's address, or
// broadcast; on 4011 back to the sender.
func TestReplyGoesWhereRFC2131Says(t *testing.T) {
	peer := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 57), Port: 68}
	relayed := pxeDiscover(t, iana.INTEL_X86PC)
	relayed.GatewayIPAddr = net.IPv4(10, 0, 0, 1)
	renewing := pxeDiscover(t, iana.INTEL_X86PC)
	renewing.ClientIPAddr = net.IPv4(198, 18, 0, 57)
	tests := []struct {
		name string
		m    *dhcpv4.DHCPv4
		port int
		want string
	}{
		{"no address yet", pxeDiscover(t, iana.INTEL_X86PC), 67, "255.255.255.255:68"},
		{"through a relay", wire(t, relayed), 67, "10.0.0.1:67"},
		{"with an address", wire(t, renewing), 67, "198.18.0.57:68"},
		{"on 4011", pxeDiscover(t, iana.INTEL_X86PC), pxePort, "198.18.0.57:68"},
	}
	for _, tt := range tests {
		if got := replyTo(tt.m, peer, tt.port).String(); got != tt.want {
			t.Errorf("%s: replyTo = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// fullHandler is the DHCP handler of a full-mode service on lo, leasing
// 127.0.0.100-127.0.0.102.
func fullHandler(t *testing.T) *dhcpHandler {
	return proxyHandler(t, func(c *Config) {
		c.DHCP = DHCPConfig{Mode: DHCPFull, First: netip.MustParseAddr("127.0.0.100"), Last: netip.MustParseAddr("127.0.0.102"),
			Router: netip.MustParseAddr("127.0.0.1"), DNS: []netip.Addr{netip.MustParseAddr("127.0.0.53")}}
	})
}

// TestFullLeasesAddressesAndBootsPXEClients: in full mode every client gets
// an address from the range (DISCOVER, REQUEST), a PXE client its boot
// file too, and a client asking for another's address a NAK.
func TestFullLeasesAddressesAndBootsPXEClients(t *testing.T) {
	h := fullHandler(t)
	plain, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	first := leaseFor(t, h, wire(t, plain))
	if first != "127.0.0.100" {
		t.Errorf("first lease = %s, want 127.0.0.100", first)
	}
	offer := h.handle(pxeDiscover(t, iana.INTEL_X86PC), dhcpv4.ServerPort).reply
	if offer == nil || offer.YourIPAddr.String() != "127.0.0.101" || offer.BootFileName != "undionly.kpxe" {
		t.Fatalf("PXE DISCOVER in full mode = %v, want 127.0.0.101 and undionly.kpxe", offer)
	}
	for code, want := range map[dhcpv4.OptionCode]string{dhcpv4.OptionSubnetMask: "ff000000", dhcpv4.OptionRouter: "7f000001",
		dhcpv4.OptionDomainNameServer: "7f000035", dhcpv4.OptionIPAddressLeaseTime: "00000e10"} {
		if got := hexOf(offer.GetOneOption(code)); got != want {
			t.Errorf("option %s = %s, want %s", code, got, want)
		}
	}
	// Another client asking for the first one's address is refused.
	thief, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 9})
	thief.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	thief.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(first)))
	if a := h.handle(wire(t, thief), dhcpv4.ServerPort); a.reply == nil || a.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("REQUEST for another client's address = %v, want a NAK", a.reply)
	}
	// Released, the address is free again.
	rel := wire(t, plain)
	rel.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRelease))
	rel.ClientIPAddr = net.ParseIP(first)
	h.handle(wire(t, rel), dhcpv4.ServerPort)
	if got := leaseFor(t, h, wire(t, thief)); got != first {
		t.Errorf("after the release the new client got %s, want %s", got, first)
	}
}

// leaseFor runs DISCOVER then REQUEST for m's client and returns the address
// it was given.
func leaseFor(t *testing.T, h *dhcpHandler, m *dhcpv4.DHCPv4) string {
	t.Helper()
	m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeDiscover))
	offer := h.handle(wire(t, m), dhcpv4.ServerPort).reply
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER: %v, want an OFFER", offer)
	}
	m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	m.UpdateOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))
	ack := h.handle(wire(t, m), dhcpv4.ServerPort).reply
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("REQUEST %s: %v, want its ACK", offer.YourIPAddr, ack)
	}
	return ack.YourIPAddr.String()
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// TestFullRunsOutOfAddressesQuietly: a full range gets no OFFER, not a
// reused address.
func TestFullRunsOutOfAddressesQuietly(t *testing.T) {
	h := fullHandler(t)
	for i := range 3 {
		m, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 1, byte(i)})
		leaseFor(t, h, m)
	}
	m, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 1, 9})
	if a := h.handle(wire(t, m), dhcpv4.ServerPort); a.reply != nil || !strings.Contains(a.why, "no free address") {
		t.Errorf("fourth client on a range of three = %v (%s), want no answer: no free address", a.reply, a.why)
	}
}
