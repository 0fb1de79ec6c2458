package netboot_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// sendGarbage sends the boot service, from inside the lab, the DHCP and
// TFTP packets no client should send: empty, truncated, a bad magic
// cookie, options cut short, an unknown architecture, a TFTP write and
// requests for files that are not boot files. The VMs that boot after it
// prove that the service still answers; its log must name the refusals.
func (l *lab) sendGarbage(t *testing.T) {
	t.Helper()
	discover, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 0x66},
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	if err != nil {
		t.Fatal(err)
	}
	whole := discover.ToBytes()
	badCookie := append([]byte{}, whole...)
	badCookie[236] ^= 0xff
	arm, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 0x67},
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64)))
	packets := map[string][][]byte{
		"67":   {{}, {1}, make([]byte, 200), whole[:240], whole[:len(whole)-60], badCookie, append(whole[:243:243], 0x35, 0x09), arm.ToBytes()},
		"4011": {{0xff}, whole[:100], badCookie},
		"69": {{}, {0}, {0, 1}, {0, 1, 'x'}, {0, 9, 1}, {0, 2, 'w', 0, 'o', 'c', 't', 'e', 't', 0},
			[]byte("\x00\x01/etc/passwd\x00octet\x00"), []byte("\x00\x01../../etc/shadow\x00octet\x00blksize\x00x\x00")},
	}
	for port, ps := range packets {
		for i, p := range ps {
			f := filepath.Join(l.dir, fmt.Sprintf("garbage-%s-%d", port, i))
			if err := os.WriteFile(f, p, 0o644); err != nil {
				t.Fatal(err)
			}
			// bash's /dev/udp sends each write as one datagram, from
			// inside the lab.
			cmd := l.ns.Command(t, "bash", "-c", fmt.Sprintf("cat %s > /dev/udp/%s/%s", f, serviceAddr, port))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("send garbage to port %s: %v\n%s", port, err, out)
			}
		}
	}
	for _, want := range []string{`msg="tftp refused: not a boot file`, `path="\"/etc/passwd\""`,
		"architecture 11 (DHCP option 93), which has no boot file here"} {
		testenv.Eventually(t, 10*time.Second, "the boot service logging "+want, func() bool {
			return strings.Contains(l.service.Output(t), want)
		})
	}
}
