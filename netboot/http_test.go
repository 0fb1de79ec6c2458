package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// recordingPlanner returns plan (or err) and keeps the clients it was asked
// about.
type recordingPlanner struct {
	plan Plan
	err  error

	mu      sync.Mutex
	clients []Client
}

func (p *recordingPlanner) Plan(_ context.Context, c Client) (Plan, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients = append(p.clients, c)
	return p.plan, p.err
}

func (p *recordingPlanner) last() Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.clients) == 0 {
		return Client{}
	}
	return p.clients[len(p.clients)-1]
}

func httpGet(t *testing.T, cfg Config, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", cfg.HTTPPort, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, string(readAll(t, resp.Body))
}

// TestIdentifyScriptAsksForThePlanWithSMBIOS: the script the DHCP answer
// names chains to the plan with the SMBIOS fields only iPXE can read, and
// boots the local disk if that fails.
func TestIdentifyScriptAsksForThePlanWithSMBIOS(t *testing.T) {
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	start(t, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort)
	for arch, local := range map[string]string{"bios": "sanboot --no-describe --drive 0x80 || exit", "uefi": "exit 1"} {
		code, body := httpGet(t, cfg, "/boot.ipxe?mac=52-54-00-12-34-56&arch="+arch)
		want := "#!ipxe\necho imagefarm: 52-54-00-12-34-56 (" + arch + ") asks what to boot\n" +
			"imgfetch --name plan " + base + "/plan.ipxe?mac=52-54-00-12-34-56&arch=" + arch +
			"&uuid=${uuid}&serial=${serial:uristring}&manufacturer=${manufacturer:uristring}&product=${product:uristring} || goto local\n" +
			"imgexec plan\n" + local + "\n:local\necho imagefarm: the boot service did not answer, booting the local disk\n" + local + "\n"
		if code != 200 || body != want {
			t.Errorf("identify script for %s = %d\n%s\nwant 200\n%s", arch, code, body, want)
		}
	}
}

// TestPlanScripts: the plan becomes the script: the local disk by default
// (sanboot on BIOS, exit on UEFI), the deploy environment with the kernel
// arguments when planned, and the local disk whenever planning fails.
func TestPlanScripts(t *testing.T) {
	const query = "/plan.ipxe?mac=52-54-00-12-34-56&arch="
	deploy := Plan{Action: BootDeploy, Args: []string{"imagefarm.token=abc", "quiet"}, Reason: "job j1 (disk:1)"}
	tests := []struct {
		name    string
		planner Planner
		noEnv   bool
		arch    string
		want    []string // lines the script must have
		not     string   // what it must not have
	}{
		{"default planner, BIOS", nil, false, "bios", []string{"echo imagefarm: no work for this device", "sanboot --no-describe --drive 0x80 || exit"}, "kernel"},
		{"default planner, UEFI", nil, false, "uefi", []string{"echo imagefarm: no work for this device", "exit 1"}, "sanboot"},
		{"deploy, UEFI", &recordingPlanner{plan: deploy}, false, "uefi", []string{
			"echo imagefarm: job j1 (disk:1)",
			"kernel BASE/files/local/vmlinuz initrd=initramfs console=ttyS0 BOOTIF=01-52-54-00-12-34-56 imagefarm.token=abc quiet || goto local",
			"initrd --name initramfs BASE/files/local/initramfs || goto local", "boot || goto local", ":local", "exit 1"}, "sanboot"},
		{"deploy, BIOS", &recordingPlanner{plan: deploy}, false, "bios", []string{"boot || goto local", "sanboot --no-describe --drive 0x80 || exit"}, ""},
		{"planner fails", &recordingPlanner{err: errors.New("controller unreachable")}, false, "uefi",
			[]string{"echo imagefarm: the farm could not plan this boot, booting the local disk", "exit 1"}, "kernel"},
		{"planner returns an argument that would inject a command", &recordingPlanner{plan: Plan{Action: BootDeploy, Args: []string{"x\nshell"}}}, false, "bios",
			[]string{"echo imagefarm: the farm could not plan this boot, booting the local disk"}, "shell"},
		{"planner returns a reason with ${...}", &recordingPlanner{plan: Plan{Reason: "${net0/mac}"}}, false, "bios",
			[]string{"echo imagefarm: the farm could not plan this boot, booting the local disk"}, "${"},
		{"deploy without a deploy environment", &recordingPlanner{plan: deploy}, true, "uefi",
			[]string{"echo imagefarm: no deploy environment on the boot service, booting the local disk", "exit 1"}, "kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log logBuffer
			cfg := loopbackConfig(t, newBootFiles(t).files, &log)
			cfg.Planner, cfg.KernelArgs = tt.planner, []string{"console=ttyS0"}
			if tt.noEnv {
				cfg.Files.Kernel, cfg.Files.Initramfs = "", ""
			}
			start(t, cfg)
			code, body := httpGet(t, cfg, query+tt.arch)
			base := fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort)
			lines := strings.Split(body, "\n")
			if code != 200 || lines[0] != "#!ipxe" {
				t.Fatalf("plan script = %d %q, want 200 and an iPXE script", code, body)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "BASE", base)
				if !containsLine(lines, w) {
					t.Errorf("script has no line %q:\n%s", w, body)
				}
			}
			if tt.not != "" && strings.Contains(body, tt.not) {
				t.Errorf("script has %q:\n%s", tt.not, body)
			}
		})
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// TestPlanGetsTheClientIPXEReports: the planner is asked with the MAC,
// arch, chain, address and SMBIOS fields from the URL; a field that is not
// printable text is left out and logged, and the machine still gets a plan.
func TestPlanGetsTheClientIPXEReports(t *testing.T) {
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	p := &recordingPlanner{}
	cfg.Planner = p
	start(t, cfg)
	code, _ := httpGet(t, cfg, "/plan.ipxe?mac=52-54-00-12-34-56&arch=uefi&uuid=0d6b2e3c-1a2b-4c5d-8e9f-0123456789ab"+
		"&serial=CZC1234%20%20&manufacturer=HP&product=HP%20EliteBook%20840%20G7")
	c := p.last()
	if code != 200 || c.MAC.String() != "52:54:00:12:34:56" || c.Arch != ArchUEFI || c.Chain != ChainIPXE ||
		c.Addr.String() != "127.0.0.1" || c.UUID != "0d6b2e3c-1a2b-4c5d-8e9f-0123456789ab" || c.Serial != "CZC1234" ||
		c.Manufacturer != "HP" || c.Product != "HP EliteBook 840 G7" {
		t.Errorf("planner asked about %+v (status %d), want every field from the URL, the serial trimmed", c, code)
	}
	code, _ = httpGet(t, cfg, "/plan.ipxe?mac=52-54-00-12-34-56&arch=bios&serial=evil%1b%5b2J&product="+strings.Repeat("x", 300))
	c = p.last()
	if code != 200 || c.Serial != "" || c.Product != "" {
		t.Errorf("planner asked about serial %q product %q (status %d), want both left out", c.Serial, c.Product, code)
	}
	for _, want := range []string{`field=serial value="\"evil\\x1b[2J\"" why="has unprintable characters"`, `field=product`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log does not say %s:\n%s", want, log.String())
		}
	}
}

// TestHTTPRefusesBadRequestsAndOtherPaths: a script URL without a valid
// MAC or arch is a 400 (iPXE then boots the local disk), any other path a
// 404, each logged.
func TestHTTPRefusesBadRequestsAndOtherPaths(t *testing.T) {
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	start(t, cfg)
	tests := []struct {
		path string
		code int
		say  string
	}{
		{"/plan.ipxe?arch=bios", 400, "mac: MAC address"},
		{"/plan.ipxe?mac=52-54-00-12-34&arch=bios", 400, "want six hex bytes"},
		{"/plan.ipxe?mac=02:00:00:00:00:00:00:01&arch=bios", 400, "want six hex bytes"},
		{"/boot.ipxe?mac=52-54-00-12-34-56&arch=arm64", 400, `arch "arm64": want bios, uefi or uefi-http`},
		{"/boot.ipxe?mac=52-54-00-12-34-56", 400, `arch "": want`},
		{"/files/../../etc/passwd", 404, "not a boot file"},
		{"/files/grubx64.efi", 404, "the deploy environment is /files/[ENV/]vmlinuz and /files/[ENV/]initramfs"},
		{"/ipxe/undionly.kpxe", 404, "the iPXE served over HTTP is /ipxe/ipxe.efi"},
		{"/ipxe/..%2fipxe.efi", 404, "not a boot file"},
		{"/", 404, "not a boot file"},
		{"/etc/passwd", 404, "not a boot file"},
	}
	for _, tt := range tests {
		code, body := httpGet(t, cfg, tt.path)
		if code != tt.code || !strings.Contains(body, tt.say) {
			t.Errorf("GET %s = %d %q, want %d saying %q", tt.path, code, body, tt.code, tt.say)
		}
	}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/plan.ipxe?mac=52-54-00-12-34-56&arch=bios", cfg.HTTPPort), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("POST /plan.ipxe = %d, want 404", resp.StatusCode)
	}
	if n := strings.Count(log.String(), `msg="http refused"`); n != len(tests)+1 {
		t.Errorf("log has %d refusals, want %d:\n%s", n, len(tests)+1, log.String())
	}
}

// TestHTTPServesTheDeployEnvironmentAndIPXE: the kernel, the initramfs and
// the UEFI iPXE (for HTTP boot) come over HTTP whole, ranges too.
func TestHTTPServesTheDeployEnvironmentAndIPXE(t *testing.T) {
	files := newBootFiles(t)
	var log logBuffer
	cfg := loopbackConfig(t, files.files, &log)
	start(t, cfg)
	for path, name := range map[string]string{"/files/vmlinuz": "vmlinuz", "/files/initramfs": "initramfs", "/ipxe/ipxe.efi": "ipxe.efi"} {
		code, body := httpGet(t, cfg, path)
		if code != 200 || !bytes.Equal([]byte(body), files.bytes[name]) {
			t.Errorf("GET %s = %d, %d bytes, want 200 and the %d bytes of %s", path, code, len(body), len(files.bytes[name]), name)
		}
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/files/vmlinuz", cfg.HTTPPort), nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got, _ := io.ReadAll(resp.Body); resp.StatusCode != 206 || !bytes.Equal(got, files.bytes["vmlinuz"][100:200]) {
		t.Errorf("range 100-199 of the kernel = %d, %d bytes, want 206 and those bytes", resp.StatusCode, len(got))
	}
	testenv.Eventually(t, 5*time.Second, "a log line for the kernel's transfer", func() bool {
		return strings.Contains(log.String(), `msg="http sent" path=/files/vmlinuz client=127.0.0.1:`)
	})
}
