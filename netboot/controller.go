package netboot

import (
	"context"
	"fmt"
	"strings"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// planTimeout bounds one PlanBoot call: iPXE waits for its script, and a
// controller that does not answer in time means a local boot.
const planTimeout = 10 * time.Second

// ControllerPlanner plans each boot with the controller's PlanBoot: a
// machine a job wants boots the deploy environment with a one-time boot
// token on its kernel command line, every other machine its local disk.
type ControllerPlanner struct {
	// Devices is the controller's DeviceService, called with the boot
	// service's operator token.
	Devices imagefarmv1.DeviceServiceClient
	// Controller is the controller's HOST:PORT as the deploy environment
	// reaches it (imagefarm.controller=).
	Controller string
	// Args are added to every deploy's kernel command line after the
	// controller's (such as imagefarm.then=reboot).
	Args []string
}

// Plan asks the controller. An error (the controller unreachable, the
// token refused) is returned, and the service boots the machine's local
// disk and logs it.
func (p ControllerPlanner) Plan(ctx context.Context, c Client) (Plan, error) {
	ctx, cancel := context.WithTimeout(ctx, planTimeout)
	defer cancel()
	resp, err := p.Devices.PlanBoot(ctx, &imagefarmv1.PlanBootRequest{Mac: c.MAC.String(), Arch: c.Arch.String()})
	if err != nil {
		return Plan{}, fmt.Errorf("controller %s: plan boot: %w", p.Controller, err)
	}
	reason := SafeReason(resp.GetReason())
	switch resp.GetAction() {
	case imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT:
		return Plan{Action: BootLocal, Reason: reason}, nil
	case imagefarmv1.BootAction_BOOT_ACTION_DEPLOY:
		args := append([]string{"imagefarm.token=" + resp.GetBootToken(), "imagefarm.controller=" + p.Controller}, p.Args...)
		return Plan{Action: BootDeploy, Args: args, Reason: reason}, nil
	}
	return Plan{}, fmt.Errorf("controller %s: plan boot: action %v, want LOCAL_BOOT or DEPLOY", p.Controller, resp.GetAction())
}

// SafeReason makes s a reason a script can echo: each character
// checkReason refuses becomes '?', and it is cut to maxReason bytes. The
// controller's reasons quote serials and models, which a machine's
// firmware fills with whatever its maker chose.
func SafeReason(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= maxReason {
			break
		}
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(reasonChars, c)) {
			b.WriteRune(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
