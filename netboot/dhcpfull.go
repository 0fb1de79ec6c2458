package netboot

import (
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// full answers as the bench network's DHCP server: an address for every
// client, boot options for PXE clients.
func (h *dhcpHandler) full(m *dhcpv4.DHCPv4, req request) answer {
	mac := m.ClientHWAddr.String()
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		want, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
		addr := h.leases.offer(mac, want)
		if !addr.IsValid() {
			return ignore("no free address in the DHCP range", req)
		}
		return h.leaseAnswer(m, req, dhcpv4.MessageTypeOffer, addr)
	case dhcpv4.MessageTypeRequest:
		return h.fullRequest(m, req, mac)
	case dhcpv4.MessageTypeRelease:
		addr, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
		h.leases.release(mac, addr)
		return ignore("a release (done)", req)
	case dhcpv4.MessageTypeDecline:
		addr, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
		h.leases.decline(mac, addr)
		return ignore("a decline (the address is kept out for a lease time)", req)
	}
	return ignore("a "+m.MessageType().String()+", which is not answered", req)
}

// fullRequest acknowledges a request for the client's own or a free
// address, and refuses (NAK) any other.
func (h *dhcpHandler) fullRequest(m *dhcpv4.DHCPv4, req request, mac string) answer {
	if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(net.IP(h.addr.AsSlice())) {
		return ignore("a request to another DHCP server", req)
	}
	addr, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
	if !addr.IsValid() {
		addr, _ = netip.AddrFromSlice(m.ClientIPAddr.To4())
	}
	if !h.leases.request(mac, addr) {
		nak, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(h.addr.AsSlice()))))
		if err != nil {
			return ignore(err.Error(), req)
		}
		return answer{reply: nak, req: req, why: "NAK: " + addr.String() + " is not free for it"}
	}
	return h.leaseAnswer(m, req, dhcpv4.MessageTypeAck, addr)
}

// leaseAnswer is a reply of type mt leasing addr, with boot options when
// the client is a boot client this service boots.
func (h *dhcpHandler) leaseAnswer(m *dhcpv4.DHCPv4, req request, mt dhcpv4.MessageType, addr netip.Addr) answer {
	self := net.IP(h.addr.AsSlice())
	reply, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IP(addr.AsSlice())),
		dhcpv4.WithServerIP(self),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(self)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(h.subnet.Bits(), 32))),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(h.net.Lease)))
	if err != nil {
		return ignore(err.Error(), req)
	}
	if h.net.Router.IsValid() {
		reply.UpdateOption(dhcpv4.OptRouter(net.IP(h.net.Router.AsSlice())))
	}
	if len(h.net.DNS) > 0 {
		dns := make([]net.IP, len(h.net.DNS))
		for i, d := range h.net.DNS {
			dns[i] = net.IP(d.AsSlice())
		}
		reply.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	why := ""
	if req.kind != KindNone {
		// An address without boot options still lets the client work.
		why = h.addBoot(reply, m, req)
	}
	return answer{reply: reply, req: req, why: why}
}
