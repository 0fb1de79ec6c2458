package testenv

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// testRange is where test networks live: 198.18.0.0/15, the range set
// aside for benchmarking networks (RFC 2544), never routed.
var testRange = netip.MustParsePrefix("198.18.0.0/15")

// Netns is a network namespace a test made: a bridge with an address of
// the 198.18.0.0/15 test range, tap devices on it for virtual machines,
// and no route out. It is removed, with everything in it, when the test
// ends.
type Netns struct {
	Name   string
	Bridge string       // "br0"; in a Peer, "eth0", its end of the veth
	Addr   netip.Prefix // the bridge's address: the host side of the test network
	taps   int
	peers  int
}

// NewNetns makes a network namespace with a bridge br0 whose address is
// addr ("198.18.0.1/24"), which must be in 198.18.0.0/15. It needs root
// (RequireRoot) and the ip command (iproute2).
func NewNetns(t testing.TB, addr string) *Netns {
	t.Helper()
	RequireRoot(t)
	ip := Tool(t, "ip", "iproute2")
	p, err := netip.ParsePrefix(addr)
	if err != nil || !testRange.Contains(p.Addr()) || p.Bits() < testRange.Bits() {
		t.Fatalf("NewNetns(%q): a test network is a prefix inside %s", addr, testRange)
	}
	n := &Netns{Name: "imagefarm-test-" + rand.Text()[:8], Bridge: "br0", Addr: p}
	Command(t, ip, "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", n.Name).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", addr, "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		Command(t, ip, append([]string{"-n", n.Name}, args...)...)
	}
	return n
}

// AddTap adds a tap device on the bridge, for a virtual machine's NIC,
// and returns its name.
func (n *Netns) AddTap(t testing.TB) string {
	t.Helper()
	tap := fmt.Sprintf("tap%d", n.taps)
	n.taps++
	for _, args := range [][]string{
		{"tuntap", "add", "dev", tap, "mode", "tap"},
		{"link", "set", tap, "master", n.Bridge},
		{"link", "set", tap, "up"},
	} {
		Command(t, "ip", append([]string{"-n", n.Name}, args...)...)
	}
	return tap
}

// Peer makes another namespace on the test network: another host, such as
// a site's DHCP server, joined to the bridge by a veth pair whose end in
// the peer, eth0, has addr (in the bridge's subnet). It is removed when
// the test ends.
func (n *Netns) Peer(t testing.TB, addr string) *Netns {
	t.Helper()
	p, err := netip.ParsePrefix(addr)
	if err != nil || !n.Addr.Masked().Contains(p.Addr()) || p.Bits() != n.Addr.Bits() {
		t.Fatalf("Peer(%q): want an address of the bridge's subnet %s", addr, n.Addr.Masked())
	}
	peer := &Netns{Name: "imagefarm-test-" + rand.Text()[:8], Bridge: "eth0", Addr: p}
	Command(t, "ip", "netns", "add", peer.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", peer.Name).Run() })
	veth := fmt.Sprintf("veth%d", n.peers)
	n.peers++
	for _, args := range [][]string{
		{"-n", n.Name, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", peer.Name},
		{"-n", n.Name, "link", "set", veth, "master", n.Bridge},
		{"-n", n.Name, "link", "set", veth, "up"},
		{"-n", peer.Name, "link", "set", "lo", "up"},
		{"-n", peer.Name, "addr", "add", addr, "dev", "eth0"},
		{"-n", peer.Name, "link", "set", "eth0", "up"},
	} {
		Command(t, "ip", args...)
	}
	return peer
}

// Command returns the command name with args, to run inside the
// namespace.
func (n *Netns) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(t.Context(), "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Proc is a process a test started.
type Proc struct {
	Cmd  *exec.Cmd
	Log  string // its standard output and error
	done chan struct{}
}

// Start starts cmd with its output in the test's file name.log, and
// stops it (by its pid) and waits for it when the test ends.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, Log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Wait waits for the process to end, for at most d, and fails the test
// naming it if it does not.
func (p *Proc) Wait(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%v still running after %v", p.Cmd.Args, d)
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output returns what the process wrote so far.
func (p *Proc) Output(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
