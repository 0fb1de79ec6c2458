package netboot_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// The lab's addresses: the boot service on the bridge, the site's DHCP
// server on another host, and the range the site leases from.
const (
	serviceAddr = "198.18.0.1"
	siteAddr    = "198.18.0.2"
	siteFirst   = 50 // 198.18.0.50
	siteLast    = 99 // 198.18.0.99
)

// lab is a boot LAN: the boot service on the bridge of ns, the VMs' taps
// on it, and the site's DHCP server in site, a peer on the bridge.
type lab struct {
	t        *testing.T
	ns, site *testenv.Netns
	dir      string
	leases   string
	service  *testenv.Proc
	dnsmasq  *testenv.Proc
}

// labConfig is how a lab's site DHCP server and boot service run.
type labConfig struct {
	// nextServer makes the site's DHCP server name the boot service as
	// next-server (siaddr), its one PXE setting: what Debian's signed GRUB
	// needs beside a proxyDHCP service.
	nextServer bool
	// kernelArgs are the deploy environment's kernel arguments.
	kernelArgs []string
	// serve are more flags of imagefarm netboot serve.
	serve []string
	// controller, when set, runs once the namespaces and the site's DHCP
	// server are up, before the boot service starts, and returns the
	// service's flags that replace --env (a controller in the namespace,
	// and the deploy environment's files).
	controller func(l *lab) []string
}

// newLab makes the namespaces, starts the site's DHCP server and the boot
// service; everything is removed when the test ends.
func newLab(t *testing.T, e bootEnv, cfg labConfig) *lab {
	t.Helper()
	l := &lab{t: t, ns: testenv.NewNetns(t, serviceAddr+"/24"), dir: t.TempDir()}
	l.site = l.ns.Peer(t, siteAddr+"/24")
	l.leases = filepath.Join(l.dir, "dnsmasq.leases")
	site := []string{"--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=" + l.site.Bridge, "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=198.18.0.%d,198.18.0.%d,255.255.255.0,1h", siteFirst, siteLast),
		"--dhcp-leasefile=" + l.leases, "--log-dhcp"}
	if cfg.nextServer {
		site = append(site, "--dhcp-boot=,,"+serviceAddr)
	}
	l.dnsmasq = testenv.Start(t, "dnsmasq", l.site.Command(t, "dnsmasq", site...))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq said:\n%s", l.dnsmasq.Output(t))
		}
	})
	l.waitFor(l.dnsmasq, "DHCP, sockets bound exclusively to interface")
	env := []string{"--env", envRef, "--trusted-keys", e.trusted, "--env-cache", filepath.Join(l.dir, "env-cache")}
	if cfg.controller != nil {
		env = cfg.controller(l)
	}
	serve := append([]string{"--store", e.store, "netboot", "serve", "--interface", l.ns.Bridge, "--shim", e.shim, "--grub", e.grub}, env...)
	for _, a := range cfg.kernelArgs {
		serve = append(serve, "--kernel-arg", a)
	}
	l.service = testenv.Start(t, "imagefarm", l.ns.Command(t, e.imagefarm, append(serve, cfg.serve...)...))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the boot service said:\n%s", l.service.Output(t))
		}
	})
	l.waitFor(l.service, "boot service ready")
	return l
}

// waitFor waits until p printed s.
func (l *lab) waitFor(p *testenv.Proc, s string) {
	l.t.Helper()
	testenv.Eventually(l.t, 30*time.Second, fmt.Sprintf("%v to print %q", p.Cmd.Args, s), func() bool {
		return strings.Contains(p.Output(l.t), s)
	})
}

// leaseOf returns the address the site's DHCP server leased to mac, or "".
func (l *lab) leaseOf(mac string) string {
	b, _ := os.ReadFile(l.leases)
	for _, line := range strings.Split(string(b), "\n") {
		// EXPIRY MAC IP HOSTNAME CLIENT-ID
		if f := strings.Fields(line); len(f) >= 3 && f[1] == mac {
			return f[2]
		}
	}
	return ""
}

// logRecord is one line of the service's log (log/slog's text format).
type logRecord map[string]string

var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// records returns the service's log lines whose msg is msg and whose
// fields have the values in match.
func (l *lab) records(msg string, match map[string]string) []logRecord {
	var out []logRecord
	for _, line := range strings.Split(l.service.Output(l.t), "\n") {
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
