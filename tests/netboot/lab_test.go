package netboot_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// The lab's addresses: the boot service on the bridge, the site's DHCP
// server, and the range the site leases from.
const (
	serviceAddr = "198.18.0.1"
	siteAddr    = "198.18.0.2"
	siteFirst   = 50 // 198.18.0.50
	siteLast    = 99 // 198.18.0.99
)

// lab is a boot LAN in two network namespaces: ns has the bridge, the boot
// service and the VMs' taps; site has dnsmasq on a veth into the bridge.
type lab struct {
	t        *testing.T
	ns, site string
	dir      string
	leases   string
	service  *process
	dnsmasq  *process
	taps     atomic.Int32
}

var labCount atomic.Int32

// labConfig is how a lab's site DHCP server and boot service run.
type labConfig struct {
	// nextServer makes the site's DHCP server name the boot service as
	// next-server (siaddr), its one PXE setting: what Debian's signed GRUB
	// needs beside a proxyDHCP service.
	nextServer bool
	// serve are more flags of imagefarm netboot serve.
	serve []string
}

// newLab makes the namespaces, starts the site's DHCP server and the boot
// service, and removes everything when the test ends.
func newLab(t *testing.T, e bootEnv, cfg labConfig) *lab {
	t.Helper()
	n := labCount.Add(1)
	l := &lab{t: t, ns: fmt.Sprintf("ifnb%d-%d", os.Getpid(), n), site: fmt.Sprintf("ifnbs%d-%d", os.Getpid(), n), dir: t.TempDir()}
	l.leases = filepath.Join(l.dir, "dnsmasq.leases")
	t.Cleanup(l.remove)
	for _, args := range [][]string{
		{"netns", "add", l.ns}, {"netns", "add", l.site},
		{"-n", l.ns, "link", "set", "lo", "up"}, {"-n", l.site, "link", "set", "lo", "up"},
		{"-n", l.ns, "link", "add", "br0", "type", "bridge"},
		{"-n", l.ns, "addr", "add", serviceAddr + "/24", "dev", "br0"},
		{"-n", l.ns, "link", "set", "br0", "up"},
		{"-n", l.ns, "link", "add", "vlab", "type", "veth", "peer", "name", "vsite", "netns", l.site},
		{"-n", l.ns, "link", "set", "vlab", "master", "br0"}, {"-n", l.ns, "link", "set", "vlab", "up"},
		{"-n", l.site, "addr", "add", siteAddr + "/24", "dev", "vsite"}, {"-n", l.site, "link", "set", "vsite", "up"},
	} {
		l.ip(args...)
	}
	site := []string{"--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=vsite", "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=198.18.0.%d,198.18.0.%d,255.255.255.0,1h", siteFirst, siteLast),
		"--dhcp-leasefile=" + l.leases, "--log-dhcp"}
	if cfg.nextServer {
		site = append(site, "--dhcp-boot=,,"+serviceAddr)
	}
	l.dnsmasq = l.start("dnsmasq", l.site, "dnsmasq", site...)
	l.dnsmasq.waitFor(t, "DHCP, sockets bound exclusively to interface vsite", 10*time.Second)
	serve := append([]string{"--log-level", "debug", "netboot", "serve", "--interface", "br0",
		"--shim", e.shim, "--grub", e.grub, "--kernel", e.kernel, "--initramfs", e.initramfs,
		"--kernel-arg", "console=ttyS0", "--kernel-arg", "quiet", "--kernel-arg", "panic=-1"}, cfg.serve...)
	l.service = l.start("imagefarm", l.ns, e.imagefarm, serve...)
	l.service.waitFor(t, "boot service ready", 10*time.Second)
	return l
}

// ip runs ip(8) and fails the test with its output.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// tap adds a tap device on the bridge for one VM.
func (l *lab) tap() string {
	name := fmt.Sprintf("tap%d", l.taps.Add(1))
	l.ip("-n", l.ns, "tuntap", "add", "dev", name, "mode", "tap")
	l.ip("-n", l.ns, "link", "set", name, "master", "br0")
	l.ip("-n", l.ns, "link", "set", name, "up")
	return name
}

// remove stops what runs in the namespaces and deletes them.
func (l *lab) remove() {
	for _, p := range []*process{l.service, l.dnsmasq} {
		if p != nil {
			p.stop()
		}
	}
	for _, ns := range []string{l.ns, l.site} {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	if l.t.Failed() {
		for _, p := range []*process{l.service, l.dnsmasq} {
			if p != nil {
				l.t.Logf("%s said:\n%s", p.name, p.out.String())
			}
		}
	}
}

// leaseOf returns the address the site's DHCP server leased to mac, or "".
func (l *lab) leaseOf(mac string) string {
	b, _ := os.ReadFile(l.leases)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == mac {
			return f[2]
		}
	}
	return ""
}

// process is a program running in a namespace, its output kept with the
// time each line arrived.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *timedOutput
	done chan struct{}
	err  error
}

// start runs bin in namespace ns.
func (l *lab) start(name, ns, bin string, args ...string) *process {
	l.t.Helper()
	p := &process{name: name, out: &timedOutput{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// stop kills the process and waits for it.
func (p *process) stop() {
	p.cmd.Process.Kill()
	<-p.done
}

// waitFor waits until the process printed s.
func (p *process) waitFor(t *testing.T, s string, limit time.Duration) time.Time {
	t.Helper()
	var at time.Time
	testenv.Eventually(t, limit, fmt.Sprintf("%s printing %q", p.name, s), func() bool {
		seen := false
		if at, seen = p.out.seen(s); seen {
			return true
		}
		select {
		case <-p.done:
			t.Fatalf("%s ended (%v) before it printed %q:\n%s", p.name, p.err, s, p.out.String())
		default:
		}
		return false
	})
	return at
}

// timedOutput keeps a process's output lines and when each arrived.
type timedOutput struct {
	mu      sync.Mutex
	partial []byte
	lines   []timedLine
}

type timedLine struct {
	at   time.Time
	text string
}

func (o *timedOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.lines = append(o.lines, timedLine{now, strings.TrimRight(string(o.partial[:i]), "\r")})
		o.partial = o.partial[i+1:]
	}
	return len(p), nil
}

// seen returns when the first line with s arrived.
func (o *timedOutput) seen(s string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.lines {
		if strings.Contains(l.text, s) {
			return l.at, true
		}
	}
	return time.Time{}, false
}

// linesWith returns the lines that have every one of subs.
func (o *timedOutput) linesWith(subs ...string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
next:
	for _, l := range o.lines {
		for _, s := range subs {
			if !strings.Contains(l.text, s) {
				continue next
			}
		}
		out = append(out, l.text)
	}
	return out
}

func (o *timedOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, l := range o.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	b.Write(o.partial)
	return b.String()
}

// logRecord is one line of the service's log (log/slog's text format).
type logRecord map[string]string

var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// records returns the service's log lines whose msg is msg and whose
// fields have the values in match.
func (l *lab) records(msg string, match map[string]string) []logRecord {
	var out []logRecord
	for _, line := range l.service.out.linesWith("msg=") {
		r := logRecord{}
		for _, m := range logField.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
				v = u
			}
			r[m[1]] = v
		}
		if r["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range match {
			ok = ok && r[k] == v
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// time is when the service logged r.
func (r logRecord) time() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r["time"])
	return t
}

// bytes is r's bytes field.
func (r logRecord) bytes() int64 {
	n, _ := strconv.ParseInt(r["bytes"], 10, 64)
	return n
}
