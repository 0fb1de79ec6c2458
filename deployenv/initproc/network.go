package initproc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// VendorClass is the DHCP vendor class (option 60) the environment
// sends: not PXEClient, so a proxyDHCP boot service leaves its requests
// to the site's DHCP server.
const VendorClass = "imagefarm-deployenv"

// Lease is the address the environment got by DHCP.
type Lease struct {
	Interface string `json:"interface"`
	MAC       string `json:"mac"`
	Address   string `json:"address"` // CIDR: 198.18.0.57/24
	Router    string `json:"router,omitempty"`
	Server    string `json:"server"` // the DHCP server that gave it
}

// Timing of bringing the network up.
const (
	linkWait    = 20 * time.Second // for a NIC to appear (a USB adapter enumerates late)
	linkUp      = 10 * time.Second // for a NIC's link to come up
	dhcpTimeout = 60 * time.Second // for the whole of DHCP
)

// bringUp asks for an address by DHCP on every NIC at once, or only on
// the one with MAC bootMAC when it is not "", and configures the first
// answer (address, routes, resolv.conf). It gives up after dhcpTimeout.
func bringUp(ctx context.Context, sysRoot, bootMAC string) (*Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, dhcpTimeout)
	defer cancel()
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	var last error
	for ctx.Err() == nil {
		links, err := waitLinks(ctx, sysRoot, bootMAC)
		if err != nil {
			return nil, err
		}
		lease, err := request(ctx, links)
		if err == nil {
			return lease, nil
		}
		last = err
	}
	return nil, fmt.Errorf("dhcp: no answer within %v: %w", dhcpTimeout, last)
}

// waitLinks returns the NICs to ask on once there is one (the one with
// bootMAC, if given).
func waitLinks(ctx context.Context, sysRoot, bootMAC string) ([]netlink.Link, error) {
	deadline := time.Now().Add(linkWait)
	for {
		var links []netlink.Link
		for _, nic := range readNICs(sysRoot) {
			if bootMAC != "" && nic.MAC != bootMAC {
				continue
			}
			if l, err := netlink.LinkByName(nic.Name); err == nil {
				links = append(links, l)
			}
		}
		if len(links) > 0 {
			return links, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if bootMAC != "" {
				return nil, fmt.Errorf("dhcp: no NIC has the MAC %s that BOOTIF names (NICs: %v)", bootMAC, readNICs(sysRoot))
			}
			return nil, errors.New("dhcp: no Ethernet NIC: its driver may be missing from the environment (imagefarm netboot build-env --module NAME)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// request runs u-root's DHCP client on links and configures the first
// IPv4 lease; the other requests are cancelled and waited for.
func request(ctx context.Context, links []netlink.Link) (*Lease, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := dhclient.SendRequests(ctx, links, true, false, dhclient.Config{
		Timeout: 4 * time.Second, Retries: 3,
		Modifiers4: []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier(VendorClass))},
	}, linkUp)
	var lease *Lease
	var errs []error
	for r := range results { // closed once every request has ended
		switch {
		case lease != nil:
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", r.Interface.Attrs().Name, r.Err))
		default:
			if err := r.Lease.Configure(); err != nil {
				errs = append(errs, fmt.Errorf("%s: configure: %w", r.Interface.Attrs().Name, err))
				continue
			}
			lease = leaseOf(r)
			cancel()
		}
	}
	if lease != nil {
		return lease, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no NIC's link came up")
	}
	return nil, errors.Join(errs...)
}

func leaseOf(r *dhclient.Result) *Lease {
	ack, _ := r.Lease.Message()
	l := &Lease{Interface: r.Interface.Attrs().Name, MAC: r.Interface.Attrs().HardwareAddr.String()}
	if p, ok := r.Lease.(*dhclient.Packet4); ok {
		l.Address = p.Lease().String()
	}
	if ack != nil {
		l.Server = ack.ServerIPAddr.String()
		if id := ack.ServerIdentifier(); id != nil {
			l.Server = id.String()
		}
		if gw := ack.Router(); len(gw) > 0 {
			l.Router = gw[0].String()
		}
	}
	return l
}
