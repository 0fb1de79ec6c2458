package netboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// bootFiles are stand-ins for Debian's boot files, in a test's folder:
// random bytes of distinct sizes, so a test knows which one it got.
type bootFiles struct {
	dir   string
	bytes map[string][]byte // by the name a client asks for
	files Files
}

func newBootFiles(t *testing.T) *bootFiles {
	t.Helper()
	dir := t.TempDir()
	b := &bootFiles{dir: dir, bytes: map[string][]byte{}}
	write := func(rel, name string, size int) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		rand.Read(data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		b.bytes[name] = data
		return p
	}
	write("ipxe/undionly.kpxe", "undionly.kpxe", 70_001)
	write("ipxe/ipxe.efi", "ipxe.efi", 1_000_003)
	write("ipxe/snponly.efi", "snponly.efi", 200_005)
	b.files = Files{
		IPXEDir:   filepath.Join(dir, "ipxe"),
		Shim:      write("shim/shimx64.efi.signed", "shimx64.efi", 950_007),
		GRUB:      write("grub/grubnetx64.efi.signed", "grubx64.efi", 1_800_009),
		Kernel:    write("env/vmlinuz", "vmlinuz", 300_011),
		Initramfs: write("env/initramfs", "initramfs", 150_013),
	}
	return b
}

// logBuffer collects a service's log lines for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// loopbackConfig is a service on 127.0.0.1 with DHCP off (no interface),
// on free ports.
func loopbackConfig(t *testing.T, files Files, log *logBuffer) Config {
	t.Helper()
	return Config{Addr: netip.MustParseAddr("127.0.0.1"), TFTPPort: freeUDPPort(t), HTTPPort: freeTCPPort(t),
		DHCP: DHCPConfig{Mode: DHCPOff}, Files: files, Log: log.logger()}
}

// proxyHandler is the DHCP handler of a proxy-mode service on lo.
func proxyHandler(t *testing.T, cfg func(*Config)) *dhcpHandler {
	t.Helper()
	c := Config{Interface: "lo", Files: newBootFiles(t).files, HTTPPort: 8080}
	if cfg != nil {
		cfg(&c)
	}
	s, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s.dhcp
}

// start runs s until the test ends, and waits for it to stop.
func start(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s of its context's end")
		}
	})
	waitListening(t, cfg)
	return s
}

// waitListening waits until the HTTP port takes connections (TFTP and
// HTTP listen before Run starts serving either).
func waitListening(t *testing.T, cfg Config) {
	t.Helper()
	addr := netip.AddrPortFrom(cfg.Addr, cfg.HTTPPort).String()
	testenv.Eventually(t, 10*time.Second, "the service listening on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func freeTCPPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// pxeDiscover is a DISCOVER as firmware PXE sends it: vendor class
// PXEClient:Arch:N, option 93, option 94, a GUID.
func pxeDiscover(t testing.TB, arch iana.Arch, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	guid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	base := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendorClass("PXEClient", arch))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 16})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid)),
	}
	m, err := dhcpv4.NewDiscovery(testMAC, append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return wire(t, m)
}

func vendorClass(prefix string, arch iana.Arch) string {
	return prefix + ":Arch:" + leftPad(int(arch)) + ":UNDI:003016"
}

func leftPad(n int) string {
	s := []byte("00000")
	for i := 4; i >= 0 && n > 0; i-- {
		s[i] = byte('0' + n%10)
		n /= 10
	}
	return string(s)
}

// wire sends m through its bytes, as the network would.
func wire(t testing.TB, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	back, err := dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatalf("FromBytes(ToBytes(m)): %v", err)
	}
	return back
}

// withUserClass is option 77 as iPXE sends it: the bare string.
func withUserClass(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte(s)))
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
