package netboot

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// pxePort is where PXE clients ask a proxyDHCP server for their boot file
// once they have an address (PXE 2.1, "boot server discovery").
const pxePort = 4011

// dhcpHandler decides the answer to each DHCP request. It holds no socket,
// so tests and fuzzing drive it with packets.
type dhcpHandler struct {
	mode   DHCPMode
	addr   netip.Addr
	subnet netip.Prefix
	net    DHCPConfig
	base   string // http://ADDR:PORT
	uefi   string // the UEFI iPXE binary's name
	chains Chains
	leases *leases // DHCPFull only
}

// answer is a reply to send, or nil and why none is sent.
type answer struct {
	reply *dhcpv4.DHCPv4
	why   string
	req   request
}

func ignore(why string, req request) answer { return answer{why: why, req: req} }

// handle answers m, which came in on port (67 or 4011).
func (h *dhcpHandler) handle(m *dhcpv4.DHCPv4, port int) answer {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return ignore("not a request", request{})
	}
	if m.HWType != iana.HWTypeEthernet || len(m.ClientHWAddr) != 6 {
		return ignore("not an Ethernet client", request{})
	}
	req := classify(m)
	if port == pxePort {
		if m.MessageType() != dhcpv4.MessageTypeRequest {
			return ignore("not a request for a boot file", req)
		}
		return h.bootAnswer(m, req, dhcpv4.MessageTypeAck)
	}
	switch h.mode {
	case DHCPProxy:
		return h.proxy(m, req)
	case DHCPFull:
		return h.full(m, req)
	}
	return ignore("DHCP is off", req)
}

// proxy answers as a proxyDHCP server: boot options, no address.
func (h *dhcpHandler) proxy(m *dhcpv4.DHCPv4, req request) answer {
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return h.bootAnswer(m, req, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		if sid := m.ServerIdentifier(); sid == nil || !sid.Equal(net.IP(h.addr.AsSlice())) {
			return ignore("a request to another DHCP server", req)
		}
		return h.bootAnswer(m, req, dhcpv4.MessageTypeAck)
	}
	return ignore(fmt.Sprintf("a %s, which a proxyDHCP server does not answer", m.MessageType()), req)
}

// bootAnswer is a proxyDHCP reply of type mt to a boot client.
func (h *dhcpHandler) bootAnswer(m *dhcpv4.DHCPv4, req request, mt dhcpv4.MessageType) answer {
	reply, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt))
	if err != nil {
		return ignore(err.Error(), req)
	}
	if why := h.addBoot(reply, m, req); why != "" {
		return ignore(why, req)
	}
	return answer{reply: reply, req: req}
}

// addBoot adds the boot options for req's client to reply, or says why
// there are none.
func (h *dhcpHandler) addBoot(reply, m *dhcpv4.DHCPv4, req request) string {
	switch {
	case req.kind == KindNone:
		return "not a PXE client (no PXEClient or HTTPClient vendor class)"
	case req.arch == ArchUnknown:
		return fmt.Sprintf("architecture %d (DHCP option 93), which has no boot file here: x86 BIOS (0) and x86-64 UEFI (7, 9, 16) boot", req.archCode)
	case req.kind == KindHTTP && !req.arch.EFI():
		return "an HTTP boot client that is not UEFI"
	}
	file, vendor := h.bootFile(m.ClientHWAddr, req)
	self := net.IP(h.addr.AsSlice())
	reply.ServerIPAddr = self
	reply.ServerHostName = h.addr.String()
	reply.BootFileName = file
	reply.UpdateOption(dhcpv4.OptServerIdentifier(self))
	reply.UpdateOption(dhcpv4.OptClassIdentifier(vendor))
	if vendor == "PXEClient" {
		// PXE boot server discovery control 8: boot the file named here,
		// without a menu or a discovery round (PXE 2.1, table 2-1).
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation,
			append(dhcpv4.Options{6: {8}}.ToBytes(), 255)))
	}
	if guid := m.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(guid) == 17 {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
	}
	return ""
}

// bootFile is what the client boots next and the vendor class to answer
// with: iPXE gets its script's URL, never iPXE again.
func (h *dhcpHandler) bootFile(mac net.HardwareAddr, req request) (file, vendor string) {
	switch {
	case req.kind == KindIPXE:
		return fmt.Sprintf("%s/boot.ipxe?mac=%s&arch=%s", h.base, hyphenMAC(mac), req.arch), "PXEClient"
	case req.kind == KindHTTP:
		return h.base + "/ipxe/" + h.uefi, "HTTPClient"
	case req.arch == ArchBIOS:
		return "undionly.kpxe", "PXEClient"
	case h.chains.For(mac) == ChainSigned:
		return "shimx64.efi", "PXEClient"
	}
	return h.uefi, "PXEClient"
}
