package netboot

import (
	"context"
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// listenDHCP opens the DHCP sockets on the interface: port 67 for the
// whole exchange, 4011 for PXE clients that ask a proxyDHCP server there.
func (s *Service) listenDHCP() ([]*net.UDPConn, error) {
	var conns []*net.UDPConn
	for _, port := range []int{dhcpv4.ServerPort, pxePort} {
		c, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: port})
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("listen for DHCP on %s port %d: %w", s.cfg.Interface, port, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		c.Close()
	}
}

// serveDHCP answers the requests that come in on conn until it is closed.
// Each is answered before the next is read: an answer takes microseconds
// and no goroutine outlives Run.
func (s *Service) serveDHCP(ctx context.Context, conn *net.UDPConn) error {
	port := conn.LocalAddr().(*net.UDPAddr).Port
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read DHCP port %d: %w", port, err)
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("dhcp packet ignored: malformed", "port", port, "from", peer.String(), "err", err)
			continue
		}
		s.answerDHCP(conn, port, peer, m)
	}
}

// answerDHCP answers m and logs what it did.
func (s *Service) answerDHCP(conn *net.UDPConn, port int, peer *net.UDPAddr, m *dhcpv4.DHCPv4) {
	a := s.dhcp.handle(m, port)
	log := s.log.With("port", port, "mac", m.ClientHWAddr.String(), "type", m.MessageType().String(),
		"kind", a.req.kind.String(), "arch", a.req.arch.String(), "xid", m.TransactionID.String())
	if a.reply == nil {
		if a.req.kind != KindNone {
			// A boot client not answered is worth a line; the rest of the
			// LAN's DHCP traffic is not.
			log.Info("dhcp not answered", "why", a.why)
		} else {
			log.Debug("dhcp not answered", "why", a.why)
		}
		return
	}
	dst := replyTo(m, peer, port)
	if _, err := conn.WriteToUDP(a.reply.ToBytes(), dst); err != nil {
		log.Warn("dhcp send", "to", dst.String(), "err", err)
		return
	}
	log.Info("dhcp answered", "reply", a.reply.MessageType().String(), "to", dst.String(),
		"your_ip", a.reply.YourIPAddr.String(), "boot_file", a.reply.BootFileName, "note", a.why)
}

// replyTo is where a reply to m goes (RFC 2131 section 4.1): the relay
// that forwarded it, the client's own address when it has one, else
// broadcast; on port 4011 back to the sender, who has an address.
func replyTo(m *dhcpv4.DHCPv4, peer *net.UDPAddr, port int) *net.UDPAddr {
	switch {
	case port == pxePort:
		return peer
	case !m.GatewayIPAddr.IsUnspecified() && m.GatewayIPAddr != nil:
		return &net.UDPAddr{IP: m.GatewayIPAddr, Port: dhcpv4.ServerPort}
	case !m.ClientIPAddr.IsUnspecified() && m.ClientIPAddr != nil:
		return &net.UDPAddr{IP: m.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}
