package netboot

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// Planner decides what one boot of one machine does. The service asks it
// for every script and GRUB config it serves; the farm's controller will be
// one (devices, jobs, boot tokens), LocalDisk is the safe default.
type Planner interface {
	Plan(ctx context.Context, c Client) (Plan, error)
}

// Action is what a boot does.
type Action int

// The actions. The zero Plan boots the local disk: a planner that forgets
// to fill one in never starts a deploy.
const (
	BootLocal  Action = iota // leave the machine alone: boot its own disk
	BootDeploy               // boot the deploy environment (Config.Kernel, Config.Initramfs)
	BootWinPE                // boot WinPE through wimboot (Config.WinPE), over iPXE only
)

// String returns the action's name in logs.
func (a Action) String() string {
	switch a {
	case BootDeploy:
		return "deploy"
	case BootWinPE:
		return "winpe"
	}
	return "local"
}

// Plan is what one boot does.
type Plan struct {
	Action Action
	// Args are added to the deploy environment's kernel command line after
	// Config.KernelArgs; see CheckKernelArg.
	Args []string
	// Reason says why, for the log and the machine's console: "no work for
	// this device".
	Reason string
}

// check returns an error naming the first thing in p that a script or
// GRUB config could not carry as given.
func (p Plan) check() error {
	for _, a := range p.Args {
		if err := CheckKernelArg(a); err != nil {
			return err
		}
	}
	return checkReason(p.Reason)
}

// LocalDisk is the default planner: every machine boots its local disk, so
// PXE can stay first in the boot order of a laptop nobody planned for.
type LocalDisk struct{}

// Plan returns BootLocal.
func (LocalDisk) Plan(context.Context, Client) (Plan, error) {
	return Plan{Action: BootLocal, Reason: "no work for this device"}, nil
}

// Static boots the machines whose MACs it lists into the deploy
// environment on every netboot, and every other machine from its local
// disk. It is how a bench chooses until the controller plans boots.
type Static struct {
	// Deploy holds the MACs to deploy, as net.HardwareAddr.String() writes
	// them (lowercase, ':').
	Deploy map[string]bool
	// Args are added to every deploy's kernel command line.
	Args []string
	// WinPE holds the MACs to boot into WinPE, written as Deploy's.
	WinPE map[string]bool
}

// Plan returns BootDeploy for a MAC Deploy lists, BootWinPE for one WinPE
// lists, else BootLocal.
func (s Static) Plan(_ context.Context, c Client) (Plan, error) {
	if s.Deploy[c.MAC.String()] {
		return Plan{Action: BootDeploy, Args: s.Args, Reason: "listed by --deploy"}, nil
	}
	if s.WinPE[c.MAC.String()] {
		return Plan{Action: BootWinPE, Reason: "listed by --deploy-winpe"}, nil
	}
	return Plan{Action: BootLocal, Reason: "no work for this device (not listed by --deploy)"}, nil
}

// ParseMAC parses a MAC address as a person or iPXE writes it
// (52:54:00:12:34:56, 52-54-00-12-34-56): six bytes, nothing else.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("MAC address %s: want six hex bytes such as 52:54:00:12:34:56", ident.Quote(s))
	}
	return mac, nil
}

// maxKernelArg is the longest kernel argument a plan may add, in bytes.
const maxKernelArg = 255

// CheckKernelArg checks one argument for the deploy environment's kernel
// command line: 1 to 255 of A-Z a-z 0-9 and . _ : / , + @ = -. Nothing
// else passes, because the same argument is written into an iPXE script
// and a GRUB config, where spaces, quotes, '$', ';', '#', '|', '&' and
// '\' would end it or run something else.
func CheckKernelArg(s string) error {
	const allowed = "._:/,+@=-"
	switch {
	case s == "":
		return fmt.Errorf("kernel argument is empty: use KEY=VALUE or a word")
	case len(s) > maxKernelArg:
		return fmt.Errorf("kernel argument %s is %d bytes long, the limit is %d", ident.Quote(s), len(s), maxKernelArg)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(allowed, c)) {
			return fmt.Errorf("kernel argument %s has %q: use A-Z a-z 0-9 and %s only", ident.Quote(s), c, allowed)
		}
	}
	return nil
}

// maxReason is the longest reason a plan may give, in bytes.
const maxReason = 200

// reasonChars are the characters a plan's reason may have besides ASCII
// letters and digits.
const reasonChars = " .,:()-_/!?+=@%"

// checkReason checks a plan's reason, which iPXE and GRUB echo on the
// machine's console: ASCII letters, digits and reasonChars, none of which
// either reads as syntax inside the words (iPXE) or single quotes (GRUB)
// the reason is written in.
func checkReason(s string) error {
	if len(s) > maxReason {
		return fmt.Errorf("plan reason is %d bytes long, the limit is %d", len(s), maxReason)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(reasonChars, c)) {
			return fmt.Errorf("plan reason %s has %q: use A-Z a-z 0-9, spaces and .,:()-_/!?+=@%% only", ident.Quote(s), c)
		}
	}
	return nil
}
