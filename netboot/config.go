package netboot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// DHCPMode is how the service takes part in DHCP.
type DHCPMode int

// The DHCP modes.
const (
	// DHCPProxy answers PXE clients only, with boot options and no address,
	// beside the site's DHCP server (proxyDHCP, ports 67 and 4011).
	DHCPProxy DHCPMode = iota
	// DHCPFull is a DHCP server for an isolated bench network: it leases
	// addresses from DHCPConfig's range to every client and adds boot
	// options for PXE clients.
	DHCPFull
	// DHCPOff serves no DHCP: the site's DHCP server sends PXE clients here
	// itself (next-server and filename).
	DHCPOff
)

// String returns the mode's name in flags and logs: proxy, full, off.
func (m DHCPMode) String() string {
	return [...]string{DHCPProxy: "proxy", DHCPFull: "full", DHCPOff: "off"}[m]
}

// ParseDHCPMode is the inverse of String.
func ParseDHCPMode(s string) (DHCPMode, error) {
	for _, m := range []DHCPMode{DHCPProxy, DHCPFull, DHCPOff} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("DHCP mode %q: want proxy (beside the site's DHCP server), full (a bench network with no other DHCP server) or off", s)
}

// DHCPConfig is the service's part in DHCP.
type DHCPConfig struct {
	Mode DHCPMode
	// First and Last bound the addresses DHCPFull leases, both included;
	// they must be in Interface's subnet.
	First, Last netip.Addr
	// Router and DNS are sent to DHCPFull's clients when valid.
	Router netip.Addr
	DNS    []netip.Addr
	// Lease is how long a DHCPFull lease lasts; 0 is an hour.
	Lease time.Duration
}

// Files are the boot files the service serves, from the host's Debian
// packages by default.
type Files struct {
	// IPXEDir holds Debian's iPXE binaries (package ipxe); "" is
	// /usr/lib/ipxe.
	IPXEDir string
	// UEFIBinary is the iPXE that UEFI clients get: ipxe.efi (its own
	// drivers, the default) or snponly.efi (the firmware's network driver,
	// for NICs iPXE has no driver for).
	UEFIBinary string
	// Shim and GRUB are the signed chain (packages shim-signed and
	// grub-efi-amd64-signed); "" is where Debian installs them.
	Shim, GRUB string
	// Kernel and Initramfs are the deploy environment; a plan that deploys
	// is refused (the machine boots its local disk) while they are "" and
	// Service.SetEnv was not called.
	Kernel, Initramfs string
	// EnvID names Kernel and Initramfs in URLs (DeployEnv.ID); "" is
	// "local".
	EnvID string
}

// Where Debian installs the boot files.
const (
	DefaultIPXEDir = "/usr/lib/ipxe"
	DefaultShim    = "/usr/lib/shim/shimx64.efi.signed"
	DefaultGRUB    = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
)

// Chains says which chain each UEFI client gets.
type Chains struct {
	// Default is the chain of a UEFI client Override does not name;
	// ChainSigned (the zero value) boots with Secure Boot on or off.
	Default Chain
	// Override names the chain of single machines, by MAC as
	// net.HardwareAddr.String() writes it.
	Override map[string]Chain
}

// For returns the chain of the machine with MAC mac.
func (c Chains) For(mac net.HardwareAddr) Chain {
	if ch, ok := c.Override[mac.String()]; ok {
		return ch
	}
	return c.Default
}

// any reports whether some client may get chain ch.
func (c Chains) any(ch Chain) bool {
	if c.Default == ch {
		return true
	}
	for _, o := range c.Override {
		if o == ch {
			return true
		}
	}
	return false
}

// Config is the boot service's configuration.
type Config struct {
	// Interface is the network interface DHCP is served on; required
	// unless DHCP.Mode is DHCPOff.
	Interface string
	// Addr is the address clients reach the service at (the next server,
	// DHCP option 54, the host of every URL). Invalid: Interface's first
	// IPv4 address.
	Addr netip.Addr
	// TFTPPort and HTTPPort are where TFTP and HTTP listen, on Addr; 0 is
	// 69 and 8080.
	TFTPPort, HTTPPort uint16
	DHCP               DHCPConfig
	Files              Files
	Chains             Chains
	// KernelArgs start every deploy's kernel command line (console=ttyS0);
	// see CheckKernelArg.
	KernelArgs []string
	// WinPE is what a plan that boots WinPE loads; nil refuses such plans
	// (the machine boots its local disk).
	WinPE *WinPE
	// Planner decides each boot; nil is LocalDisk.
	Planner Planner
	// Log gets one line per answer, transfer and refusal; nil is
	// slog.Default().
	Log *slog.Logger
}

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.TFTPPort == 0 {
		c.TFTPPort = 69
	}
	if c.HTTPPort == 0 {
		c.HTTPPort = 8080
	}
	if c.DHCP.Lease == 0 {
		c.DHCP.Lease = time.Hour
	}
	if c.Files.IPXEDir == "" {
		c.Files.IPXEDir = DefaultIPXEDir
	}
	if c.Files.UEFIBinary == "" {
		c.Files.UEFIBinary = "ipxe.efi"
	}
	if c.Files.Shim == "" {
		c.Files.Shim = DefaultShim
	}
	if c.Files.GRUB == "" {
		c.Files.GRUB = DefaultGRUB
	}
	if c.Planner == nil {
		c.Planner = LocalDisk{}
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// resolveAddr fills in c.Addr from c.Interface and returns the interface's
// subnet containing it (invalid when there is no interface).
func (c *Config) resolveAddr() (netip.Prefix, error) {
	if c.Interface == "" {
		if c.DHCP.Mode != DHCPOff {
			return netip.Prefix{}, fmt.Errorf("no interface: name the network interface DHCP is served on (%s DHCP), or turn DHCP off", c.DHCP.Mode)
		}
		if !c.Addr.Is4() {
			return netip.Prefix{}, errors.New("no address: with DHCP off and no interface, give the IPv4 address clients reach the service at")
		}
		return netip.Prefix{}, nil
	}
	ifi, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("interface %q: %w (ip -brief address lists them)", c.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("addresses of %s: %w", c.Interface, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		ones, _ := ipn.Mask.Size()
		if !c.Addr.IsValid() {
			c.Addr = ip
		}
		if c.Addr == ip {
			return netip.PrefixFrom(ip, ones).Masked(), nil
		}
	}
	if c.Addr.IsValid() {
		return netip.Prefix{}, fmt.Errorf("address %s is not on %s: give one of its addresses (ip -brief address show %s)", c.Addr, c.Interface, c.Interface)
	}
	return netip.Prefix{}, fmt.Errorf("interface %s has no IPv4 address: give it one, or name the interface of the boot network", c.Interface)
}

// check returns an error naming the first thing wrong with c, which has
// its defaults and its address.
func (c Config) check(subnet netip.Prefix) error {
	if !c.Addr.Is4() {
		return fmt.Errorf("address %s: want an IPv4 address (PXE is IPv4)", c.Addr)
	}
	if c.Files.UEFIBinary != "ipxe.efi" && c.Files.UEFIBinary != "snponly.efi" {
		return fmt.Errorf("UEFI iPXE binary %q: want ipxe.efi or snponly.efi", c.Files.UEFIBinary)
	}
	if err := c.checkFiles(); err != nil {
		return err
	}
	if c.WinPE != nil {
		if err := c.WinPE.check(); err != nil {
			return err
		}
	}
	for _, a := range c.KernelArgs {
		if err := CheckKernelArg(a); err != nil {
			return err
		}
	}
	if c.DHCP.Mode == DHCPFull {
		return c.DHCP.checkRange(subnet, c.Addr)
	}
	return nil
}

// checkFiles checks that the files some client may be sent are there.
func (c Config) checkFiles() error {
	for _, name := range []string{"undionly.kpxe", c.Files.UEFIBinary} {
		p := filepath.Join(c.Files.IPXEDir, name)
		if err := userpath.CheckFile(p); err != nil {
			return fmt.Errorf("iPXE binary %s: %w (install Debian's ipxe package, or give the folder that holds it)", p, err)
		}
	}
	if c.Chains.any(ChainSigned) {
		for _, p := range []string{c.Files.Shim, c.Files.GRUB} {
			if err := userpath.CheckFile(p); err != nil {
				return fmt.Errorf("signed boot chain file %s: %w (install Debian's shim-signed and grub-efi-amd64-signed, or give UEFI clients the ipxe chain)", p, err)
			}
		}
	}
	for _, p := range []string{c.Files.Kernel, c.Files.Initramfs} {
		if p == "" {
			continue
		}
		if err := userpath.CheckFile(p); err != nil {
			return fmt.Errorf("deploy environment file %s: %w", p, err)
		}
	}
	return nil
}

// maxRange is the most addresses DHCPFull leases.
const maxRange = 1 << 16

// checkRange checks DHCPFull's range against the subnet it serves.
func (d DHCPConfig) checkRange(subnet netip.Prefix, self netip.Addr) error {
	switch {
	case !d.First.Is4() || !d.Last.Is4():
		return errors.New("full DHCP needs a range of IPv4 addresses to lease, such as 198.18.0.100-198.18.0.199")
	case d.Last.Less(d.First):
		return fmt.Errorf("DHCP range %s-%s ends before it starts", d.First, d.Last)
	case !subnet.IsValid() || !subnet.Contains(d.First) || !subnet.Contains(d.Last):
		return fmt.Errorf("DHCP range %s-%s is not inside the interface's subnet %s", d.First, d.Last, subnet)
	case rangeSize(d.First, d.Last) > maxRange:
		return fmt.Errorf("DHCP range %s-%s has more than %d addresses", d.First, d.Last, maxRange)
	case !self.Less(d.First) && !d.Last.Less(self):
		return fmt.Errorf("DHCP range %s-%s holds the service's own address %s", d.First, d.Last, self)
	}
	return nil
}

// rangeSize is how many addresses first..last holds (IPv4).
func rangeSize(first, last netip.Addr) int {
	a, b := first.As4(), last.As4()
	u := func(x [4]byte) int { return int(x[0])<<24 | int(x[1])<<16 | int(x[2])<<8 | int(x[3]) }
	return u(b) - u(a) + 1
}
