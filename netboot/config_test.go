package netboot

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewRefusesWhatCannotBoot: each thing that would leave a client
// without its boot file, or the LAN with a wrong DHCP server, is refused by
// New, naming it and what to do.
func TestNewRefusesWhatCannotBoot(t *testing.T) {
	files := newBootFiles(t).files
	addr := func(s string) netip.Addr { a, _ := netip.ParseAddr(s); return a }
	full := func(first, last string) func(*Config) {
		return func(c *Config) { c.DHCP = DHCPConfig{Mode: DHCPFull, First: addr(first), Last: addr(last)} }
	}
	tests := []struct {
		name string
		cfg  func(*Config)
		say  string
	}{
		{"no interface for proxy DHCP", func(c *Config) { c.Interface = "" }, "no interface: name the network interface DHCP is served on (proxy DHCP)"},
		{"an interface that does not exist", func(c *Config) { c.Interface = "nosuch0" }, `interface "nosuch0"`},
		{"an address not on the interface", func(c *Config) { c.Addr = addr("198.18.0.1") }, "address 198.18.0.1 is not on lo"},
		{"DHCP off without an address", func(c *Config) { c.Interface, c.DHCP.Mode = "", DHCPOff }, "give the IPv4 address clients reach the service at"},
		{"no iPXE", func(c *Config) { c.Files.IPXEDir = t.TempDir() }, "undionly.kpxe: stat"},
		{"no snponly.efi when asked for", func(c *Config) {
			os.Remove(filepath.Join(c.Files.IPXEDir, "snponly.efi"))
			c.Files.UEFIBinary = "snponly.efi"
		}, "install Debian's ipxe package"},
		{"another UEFI binary", func(c *Config) { c.Files.UEFIBinary = "ipxe.lkrn" }, `UEFI iPXE binary "ipxe.lkrn": want ipxe.efi or snponly.efi`},
		{"no shim for the signed chain", func(c *Config) { c.Files.Shim = filepath.Join(t.TempDir(), "shimx64.efi") },
			"install Debian's shim-signed and grub-efi-amd64-signed, or give UEFI clients the ipxe chain"},
		{"no GRUB for one signed machine", func(c *Config) {
			c.Chains = Chains{Default: ChainIPXE, Override: map[string]Chain{"52:54:00:12:34:56": ChainSigned}}
			c.Files.GRUB = t.TempDir()
		}, "is a folder"},
		{"a kernel that is a folder", func(c *Config) { c.Files.Kernel = t.TempDir() }, "deploy environment file"},
		{"a kernel argument with a space", func(c *Config) { c.KernelArgs = []string{"console=ttyS0 init=/bin/sh"} }, `has ' '`},
		{"full DHCP without a range", full("", ""), "full DHCP needs a range"},
		{"a range backwards", full("127.0.0.20", "127.0.0.10"), "ends before it starts"},
		{"a range outside the subnet", full("198.18.0.10", "198.18.0.20"), "is not inside the interface's subnet 127.0.0.0/8"},
		{"a range with the service's address", full("127.0.0.1", "127.0.0.20"), "holds the service's own address 127.0.0.1"},
		{"a range too large", full("127.0.0.2", "127.1.0.2"), "more than 65536 addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Interface: "lo", Files: files}
			c.Files.IPXEDir = copyDir(t, files.IPXEDir)
			tt.cfg(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tt.say) {
				t.Errorf("New = %v, want an error saying %q", err, tt.say)
			}
		})
	}
}

func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestNewTakesTheInterfaceAddress: with no address given, the service is
// at the interface's first IPv4 address, and every URL says so.
func TestNewTakesTheInterfaceAddress(t *testing.T) {
	s, err := New(Config{Interface: "lo", Files: newBootFiles(t).files, HTTPPort: 8081})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Addr.String() != "127.0.0.1" || s.base != "http://127.0.0.1:8081" {
		t.Errorf("address %s, base %s; want 127.0.0.1 and http://127.0.0.1:8081", s.cfg.Addr, s.base)
	}
}

// TestParsers: the names flags and URLs use.
func TestParsers(t *testing.T) {
	for _, s := range []string{"bios", "uefi", "uefi-http"} {
		if a, err := ParseArch(s); err != nil || a.String() != s {
			t.Errorf("ParseArch(%q) = %v, %v", s, a, err)
		}
	}
	for _, s := range []string{"signed", "ipxe"} {
		if c, err := ParseChain(s); err != nil || c.String() != s {
			t.Errorf("ParseChain(%q) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"proxy", "full", "off"} {
		if m, err := ParseDHCPMode(s); err != nil || m.String() != s {
			t.Errorf("ParseDHCPMode(%q) = %v, %v", s, m, err)
		}
	}
	for _, bad := range []string{"", "BIOS", "unknown"} {
		if _, err := ParseArch(bad); err == nil {
			t.Errorf("ParseArch(%q) = nil error", bad)
		}
	}
	if _, err := ParseChain("shim"); err == nil || !strings.Contains(err.Error(), "want signed") {
		t.Errorf("ParseChain(shim) = %v", err)
	}
	if _, err := ParseDHCPMode("on"); err == nil || !strings.Contains(err.Error(), "want proxy") {
		t.Errorf("ParseDHCPMode(on) = %v", err)
	}
	for _, mac := range []string{"52:54:00:12:34:56", "52-54-00-12-34-56", "5254.0012.3456"} {
		if m, err := ParseMAC(mac); err != nil || m.String() != "52:54:00:12:34:56" {
			t.Errorf("ParseMAC(%q) = %v, %v", mac, m, err)
		}
	}
	for _, mac := range []string{"", "52:54:00:12:34", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "zz:54:00:12:34:56"} {
		if _, err := ParseMAC(mac); err == nil {
			t.Errorf("ParseMAC(%q) = nil error", mac)
		}
	}
}
