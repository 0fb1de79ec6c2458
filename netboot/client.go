package netboot

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Arch is a client's firmware, as DHCP option 93 names it.
type Arch int

// The firmwares the service boots. Every other option 93 value is
// ArchUnknown, and such a client gets no answer.
const (
	ArchUnknown  Arch = iota
	ArchBIOS          // x86 PC BIOS (option 93 = 0)
	ArchUEFI          // x86-64 UEFI (7, or 9 which many x86-64 firmwares send)
	ArchUEFIHTTP      // x86-64 UEFI HTTP boot (16)
)

var archNames = map[Arch]string{ArchBIOS: "bios", ArchUEFI: "uefi", ArchUEFIHTTP: "uefi-http"}

// String returns the arch's name in URLs and logs: bios, uefi, uefi-http.
func (a Arch) String() string {
	if n, ok := archNames[a]; ok {
		return n
	}
	return "unknown"
}

// EFI reports whether the firmware is UEFI (so "boot the local disk" is
// iPXE's exit, not sanboot).
func (a Arch) EFI() bool { return a == ArchUEFI || a == ArchUEFIHTTP }

// ParseArch is the inverse of String, for the arch in a script URL.
func ParseArch(s string) (Arch, error) {
	for a, n := range archNames {
		if n == s {
			return a, nil
		}
	}
	return ArchUnknown, fmt.Errorf("arch %q: want bios, uefi or uefi-http", s)
}

// archFromIANA maps option 93's values to the firmwares served.
func archFromIANA(a iana.Arch) Arch {
	switch a {
	case iana.INTEL_X86PC:
		return ArchBIOS
	case iana.EFI_X86_64, iana.EFI_BC:
		return ArchUEFI
	case iana.EFI_X86_64_HTTP:
		return ArchUEFIHTTP
	}
	return ArchUnknown
}

// Kind is what is asking: the firmware's own PXE, its HTTP boot, or iPXE.
type Kind int

// The kinds of boot clients.
const (
	KindNone Kind = iota // not a boot client: no PXEClient or HTTPClient vendor class
	KindPXE              // firmware PXE (vendor class PXEClient)
	KindHTTP             // firmware UEFI HTTP boot (vendor class HTTPClient)
	KindIPXE             // iPXE, ours or a NIC's (user class iPXE)
)

var kindNames = [...]string{KindNone: "none", KindPXE: "pxe", KindHTTP: "http-boot", KindIPXE: "ipxe"}

// String returns the kind's name in logs.
func (k Kind) String() string { return kindNames[k] }

// Chain is the boot chain a UEFI client is given.
type Chain int

// The chains. ChainSigned needs no key of the farm's own: every binary in
// it is signed by Microsoft (shim) or Debian (GRUB, the kernel).
const (
	ChainSigned Chain = iota // shim → GRUB → kernel, all signed: boots with Secure Boot on
	ChainIPXE                // iPXE, unsigned: Secure Boot must be off
)

// String returns the chain's name in flags and logs: signed, ipxe.
func (c Chain) String() string {
	if c == ChainIPXE {
		return "ipxe"
	}
	return "signed"
}

// ParseChain is the inverse of String.
func ParseChain(s string) (Chain, error) {
	switch s {
	case "signed":
		return ChainSigned, nil
	case "ipxe":
		return ChainIPXE, nil
	}
	return 0, fmt.Errorf("chain %q: want signed (shim and GRUB, for Secure Boot) or ipxe", s)
}

// Client is one boot of one machine, as far as the service knows it.
type Client struct {
	MAC  net.HardwareAddr
	Arch Arch
	// Chain is how it booted: ChainIPXE for every client that runs iPXE
	// (BIOS ones too), ChainSigned for one that runs GRUB.
	Chain Chain
	// Addr is the address its request came from.
	Addr netip.Addr
	// The machine's SMBIOS fields, as iPXE reports them; empty on the
	// signed chain, where GRUB reports none.
	UUID, Serial, Manufacturer, Product string
}

// request is what the DHCP handler reads from a request.
type request struct {
	kind Kind
	arch Arch
	// archCode is option 93's first value (or the vendor class's), for logs.
	archCode int
}

// classify reads what kind of boot client sent m and its firmware.
func classify(m *dhcpv4.DHCPv4) request {
	vendor := string(m.GetOneOption(dhcpv4.OptionClassIdentifier))
	var r request
	switch {
	case isIPXE(m):
		r.kind = KindIPXE
	case strings.HasPrefix(vendor, "PXEClient"):
		r.kind = KindPXE
	case strings.HasPrefix(vendor, "HTTPClient"):
		r.kind = KindHTTP
	default:
		return r
	}
	r.archCode = -1
	if archs := m.ClientArch(); len(archs) > 0 {
		r.archCode = int(archs[0])
	} else if code, ok := vendorArch(vendor); ok {
		r.archCode = code
	}
	if r.archCode >= 0 {
		r.arch = archFromIANA(iana.Arch(r.archCode))
	}
	return r
}

// isIPXE reports whether m comes from iPXE: user class (option 77) iPXE,
// sent raw by iPXE or as an RFC 3004 list.
func isIPXE(m *dhcpv4.DHCPv4) bool {
	raw := m.GetOneOption(dhcpv4.OptionUserClassInformation)
	if bytes.Equal(raw, []byte("iPXE")) {
		return true
	}
	for len(raw) > 0 {
		n := int(raw[0])
		if n == 0 || 1+n > len(raw) {
			return false
		}
		if string(raw[1:1+n]) == "iPXE" {
			return true
		}
		raw = raw[1+n:]
	}
	return false
}

// vendorArch reads the arch from a vendor class such as
// "PXEClient:Arch:00007:UNDI:003016", for clients that send no option 93.
func vendorArch(vendor string) (int, bool) {
	parts := strings.Split(vendor, ":")
	if len(parts) < 3 || parts[1] != "Arch" {
		return 0, false
	}
	n, err := strconv.ParseUint(parts[2], 10, 16)
	return int(n), err == nil
}
