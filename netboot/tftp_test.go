package netboot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// tftpGet fetches path from the service with a real TFTP client asking
// for blksize 1468 and tsize, and returns the bytes and the tsize given.
func tftpGet(t *testing.T, cfg Config, path string) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(fmt.Sprintf("127.0.0.1:%d", cfg.TFTPPort))
	if err != nil {
		t.Fatal(err)
	}
	c.SetBlockSize(1468)
	c.RequestTSize(true)
	c.SetTimeout(2 * time.Second)
	wt, err := c.Receive(path, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, 0, err
	}
	return b.Bytes(), size, nil
}

// TestTFTPServesTheBootFilesWhole fetches every boot file of both chains
// with a real client and compares the bytes and the announced size.
func TestTFTPServesTheBootFilesWhole(t *testing.T) {
	files := newBootFiles(t)
	var log logBuffer
	cfg := loopbackConfig(t, files.files, &log)
	start(t, cfg)
	for _, name := range []string{"undionly.kpxe", "ipxe.efi", "shimx64.efi", "grubx64.efi", "vmlinuz", "initramfs", "/grubx64.efi"} {
		got, size, err := tftpGet(t, cfg, name)
		want := files.bytes[strings.TrimPrefix(name, "/")]
		switch {
		case err != nil:
			t.Errorf("get %s: %v", name, err)
		case !bytes.Equal(got, want):
			t.Errorf("get %s: %d bytes that differ from the file's %d", name, len(got), len(want))
		case size != int64(len(want)):
			t.Errorf("get %s: tsize %d, want %d", name, size, len(want))
		}
	}
	// The server logs a transfer once the last ACK is in: maybe after the
	// client has every byte.
	testenv.Eventually(t, 5*time.Second, "a log line for ipxe.efi's transfer with its bytes", func() bool {
		return strings.Contains(log.String(), `msg="tftp sent" path="\"ipxe.efi\"" client=127.0.0.1 bytes=1000003`)
	})
}

// TestTFTPRefusesEveryOtherPath: TFTP serves the boot files and nothing
// else, whatever the spelling, and says so in the log.
func TestTFTPRefusesEveryOtherPath(t *testing.T) {
	files := newBootFiles(t)
	var log logBuffer
	cfg := loopbackConfig(t, files.files, &log)
	start(t, cfg)
	for _, path := range []string{
		"/etc/passwd", "../ipxe/undionly.kpxe", "ipxe/undionly.kpxe", "grub/../undionly.kpxe", "./undionly.kpxe",
		"UNDIONLY.KPXE", "//undionly.kpxe", "undionly.kpxe/", "snponly.efi", "ipxe.lkrn", files.files.Kernel,
		"grub/imagefarm/not-a-mac.cfg", "grub/imagefarm/52:54:00:12:34:56", "grub/imagefarm/../../vmlinuz", "grub/grub.cfg.bak",
		"52:54:00:12:34:56.cfg", "grub/52:54:00:12:34:56.cfg", "x/imagefarm/52:54:00:12:34:56.cfg",
	} {
		_, _, err := tftpGet(t, cfg, path)
		if err == nil || !strings.Contains(err.Error(), "is not a boot file of this server") {
			t.Errorf("get %q: err %v, want it refused as not a boot file", path, err)
		}
		if want := fmt.Sprintf("tftp refused: not a boot file (TFTP serves the iPXE binaries and the signed chain, nothing else)\" path=%q", ident.Quote(path)); !strings.Contains(log.String(), want) {
			t.Errorf("get %q: the log does not say %s", path, want)
		}
	}
}

// TestTFTPRefusesProbesQuietly: the files shim and GRUB look for on every
// boot and do without are refused too, logged at debug level.
func TestTFTPRefusesProbesQuietly(t *testing.T) {
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	start(t, cfg)
	for _, path := range []string{"revocations_sbat.efi", "/grub/x86_64-efi/fs.lst"} {
		if _, _, err := tftpGet(t, cfg, path); err == nil || !strings.Contains(err.Error(), "is not a boot file of this server") {
			t.Errorf("get %s: err %v, want it refused", path, err)
		}
		want := fmt.Sprintf("level=DEBUG msg=\"tftp not served: an optional file the signed chain looks for\" path=%q", ident.Quote(path))
		if !strings.Contains(log.String(), want) {
			t.Errorf("log does not say %s:\n%s", want, log.String())
		}
	}
	if strings.Contains(log.String(), "level=WARN") {
		t.Errorf("a probe was logged as a warning:\n%s", log.String())
	}
}

// TestTFTPGeneratesGRUBConfigs: grub/grub.cfg loads the machine's config by
// MAC, and the machine's config is its plan (the default: the local disk).
func TestTFTPGeneratesGRUBConfigs(t *testing.T) {
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	cfg.Planner = Static{Deploy: map[string]bool{"52:54:00:12:34:56": true}, Args: []string{"marker=1"}}
	start(t, cfg)
	main, _, err := tftpGet(t, cfg, "/grub/grub.cfg")
	if err != nil || !strings.Contains(string(main), "configfile /grub/imagefarm/${net_default_mac}.cfg") {
		t.Fatalf("grub/grub.cfg = %q, %v; want it to load the machine's config", main, err)
	}
	deploy, _, err := tftpGet(t, cfg, "/grub/imagefarm/52:54:00:12:34:56.cfg")
	if err != nil || !strings.Contains(string(deploy), "linux /env/local/vmlinuz BOOTIF=01-52-54-00-12-34-56 marker=1\ninitrd /env/local/initramfs\nboot\n") {
		t.Errorf("the listed machine's config = %q, %v; want its deploy", deploy, err)
	}
	local, _, err := tftpGet(t, cfg, "grub/imagefarm/52:54:00:00:00:01.cfg")
	if err != nil || strings.Contains(string(local), "linux") || !strings.HasSuffix(string(local), "exit\n") {
		t.Errorf("another machine's config = %q, %v; want only an exit to the local disk", local, err)
	}
}

// TestTFTPWithoutSignedChainServesOnlyIPXE: when no client gets the signed
// chain, shim, GRUB, its configs and the kernel are not served by TFTP.
func TestTFTPWithoutSignedChainServesOnlyIPXE(t *testing.T) {
	var log logBuffer
	files := newBootFiles(t)
	cfg := loopbackConfig(t, files.files, &log)
	cfg.Chains.Default = ChainIPXE
	start(t, cfg)
	for _, path := range []string{"shimx64.efi", "grubx64.efi", "grub/grub.cfg", "grub/imagefarm/52:54:00:12:34:56.cfg", "vmlinuz", "initramfs"} {
		if _, _, err := tftpGet(t, cfg, path); err == nil {
			t.Errorf("get %s: served, want it refused: no client gets the signed chain", path)
		}
	}
	if got, _, err := tftpGet(t, cfg, "ipxe.efi"); err != nil || !bytes.Equal(got, files.bytes["ipxe.efi"]) {
		t.Errorf("get ipxe.efi: %d bytes, %v; want the file", len(got), err)
	}
}

// rawTFTP is a UDP socket a test writes TFTP packets to by hand: the
// malformed ones no client library sends.
type rawTFTP struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
}

func newRawTFTP(t *testing.T, cfg Config) *rawTFTP {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawTFTP{t: t, conn: conn, srv: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(cfg.TFTPPort)}}
}

func (r *rawTFTP) send(p []byte, to *net.UDPAddr) {
	if _, err := r.conn.WriteToUDP(p, to); err != nil {
		r.t.Fatal(err)
	}
}

// recv returns the next packet and where it came from.
func (r *rawTFTP) recv() ([]byte, *net.UDPAddr) {
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, from, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		r.t.Fatalf("no TFTP packet within 5s: %v", err)
	}
	return buf[:n], from
}

func rrq(name string, opts ...string) []byte {
	p := []byte{0, 1}
	for _, s := range append([]string{name, "octet"}, opts...) {
		p = append(append(p, s...), 0)
	}
	return p
}

func ack(block uint16) []byte { return binary.BigEndian.AppendUint16([]byte{0, 4}, block) }

// TestTFTPOptionsWindowsizeAndBlksize: a request with blksize, tsize and
// windowsize (as EDK2 sends it) gets an OACK with blksize and tsize only,
// and then the file block by block at that size.
func TestTFTPOptionsWindowsizeAndBlksize(t *testing.T) {
	files := newBootFiles(t)
	var log logBuffer
	cfg := loopbackConfig(t, files.files, &log)
	start(t, cfg)
	r := newRawTFTP(t, cfg)
	r.send(rrq("undionly.kpxe", "blksize", "1408", "tsize", "0", "windowsize", "4"), r.srv)
	oack, from := r.recv()
	opts := map[string]string{}
	parts := strings.Split(string(oack[2:]), "\x00")
	for i := 0; i+1 < len(parts); i += 2 {
		opts[parts[i]] = parts[i+1]
	}
	want := map[string]string{"blksize": "1408", "tsize": "70001"}
	if oack[1] != 6 || fmt.Sprint(opts) != fmt.Sprint(want) {
		t.Fatalf("answer to the request = opcode %d options %v, want an OACK with %v (no windowsize)", oack[1], opts, want)
	}
	var got []byte
	for block := uint16(0); ; block++ {
		r.send(ack(block), from)
		data, _ := r.recv()
		if binary.BigEndian.Uint16(data) != 3 || binary.BigEndian.Uint16(data[2:]) != block+1 {
			t.Fatalf("after ACK %d: packet %x, want DATA %d", block, data[:4], block+1)
		}
		got = append(got, data[4:]...)
		if len(data)-4 < 1408 {
			r.send(ack(block+1), from)
			break
		}
		if len(data)-4 != 1408 {
			t.Fatalf("block %d has %d bytes, want 1408", block+1, len(data)-4)
		}
	}
	if !bytes.Equal(got, files.bytes["undionly.kpxe"]) {
		t.Errorf("got %d bytes that differ from undionly.kpxe's %d", len(got), len(files.bytes["undionly.kpxe"]))
	}
}

// TestTFTPSurvivesMalformedPackets sends what no client should (truncated
// requests, unknown opcodes, a write, stray ACKs and DATA, options with
// bad values) and then checks that a real client still gets its file.
func TestTFTPSurvivesMalformedPackets(t *testing.T) {
	files := newBootFiles(t)
	var log logBuffer
	cfg := loopbackConfig(t, files.files, &log)
	start(t, cfg)
	r := newRawTFTP(t, cfg)
	for _, p := range [][]byte{
		{}, {0}, {0, 1}, {0, 1, 'x'}, {0, 1, 'x', 0}, {0, 9, 1, 2, 3}, {0xff, 0xff},
		{0, 3, 0, 1, 'd', 'a', 't', 'a'}, ack(7), {0, 5, 0, 1}, {0, 6, 'b', 0},
		append([]byte{0, 1}, bytes.Repeat([]byte{'a'}, 600)...),
		rrq("undionly.kpxe", "blksize"),                     // an option without its value
		rrq("undionly.kpxe", "blksize", "x"),                // not a number
		rrq("undionly.kpxe", "blksize", "8"),                // too small
		rrq("undionly.kpxe", "blksize", "9999999999999999"), // too large
		rrq("undionly.kpxe", "tsize", "-1", "windowsize", "0"),
		{0, 2, 'e', 'v', 'i', 'l', 0, 'o', 'c', 't', 'e', 't', 0}, // a write
	} {
		r.send(p, r.srv)
	}
	// The write is refused with a TFTP error.
	sawRefusal := false
	for !sawRefusal {
		p, _ := r.recv()
		sawRefusal = len(p) > 4 && p[1] == 5 && strings.Contains(string(p[4:]), "write")
	}
	got, _, err := tftpGet(t, cfg, "ipxe.efi")
	if err != nil || !bytes.Equal(got, files.bytes["ipxe.efi"]) {
		t.Errorf("after the malformed packets, get ipxe.efi: %d bytes, %v; want the file", len(got), err)
	}
}
