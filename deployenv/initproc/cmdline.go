package initproc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Then is what the environment does once it is done.
type Then string

// What it can do once done.
const (
	ThenWait     Then = ""         // stay up, the console readable
	ThenPowerOff Then = "poweroff" // power the device off
	ThenReboot   Then = "reboot"   // restart it (to its local disk, once PXE boots local)
)

// Params are what the kernel command line tells the environment.
type Params struct {
	// Controller is the controller's host:port; "" when not given.
	Controller string
	// Token is the boot token; it is never printed or logged.
	Token string
	// Insecure is imagefarm.insecure=1: reach the controller in
	// plaintext (a lab on a trusted network), not over TLS verified
	// against the farm CA (FarmCA).
	Insecure bool
	// Then is what to do once done.
	Then Then
	// BootMAC is the MAC of the NIC that netbooted (BOOTIF), lower case
	// with colons; "" when not given.
	BootMAC string
	// Disk is the disk the plan names (imagefarm.disk_serial and
	// imagefarm.disk_size, both or neither); nil when not given.
	Disk *Want
	// DebugDD is imagefarm.debug.dd: a benchmark's baseline (DD).
	DebugDD string
}

// ParseParams reads Params from the kernel command line. A value that
// does not parse is an error naming the parameter; the environment
// reports it and does nothing it was not sure it was asked to.
func ParseParams(cmdline string) (Params, error) {
	args := splitCmdline(cmdline)
	p := Params{Controller: args["imagefarm.controller"], Token: args["imagefarm.token"], Then: Then(args["imagefarm.then"])}
	var errs []error
	switch v, ok := args["imagefarm.insecure"]; {
	case !ok || v == "0":
	case v == "1":
		p.Insecure = true
	default:
		errs = append(errs, fmt.Errorf("imagefarm.insecure=%q: want 1 (plaintext to the controller) or leave it out", v))
	}
	if p.Controller != "" {
		if _, port, err := net.SplitHostPort(p.Controller); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("imagefarm.controller=%q: want HOST:PORT", p.Controller))
		}
	}
	switch p.Then {
	case ThenWait, ThenPowerOff, ThenReboot:
	default:
		errs = append(errs, fmt.Errorf("imagefarm.then=%q: want poweroff or reboot (or leave it out to wait)", p.Then))
		p.Then = ThenWait
	}
	if disk, err := parseDisk(args); err != nil {
		errs = append(errs, err)
	} else {
		p.Disk = disk
	}
	if url, ok := args["imagefarm.debug.dd"]; ok {
		if err := checkDebugDD(url); err != nil {
			errs = append(errs, err)
		} else {
			p.DebugDD = url
		}
	}
	if bootif, ok := args["BOOTIF"]; ok {
		mac, err := parseBootIF(bootif)
		if err != nil {
			errs = append(errs, err)
		}
		p.BootMAC = mac
	}
	return p, errors.Join(errs...)
}

// parseDisk reads imagefarm.disk_serial and imagefarm.disk_size.
func parseDisk(args map[string]string) (*Want, error) {
	serial, hasSerial := args["imagefarm.disk_serial"]
	size, hasSize := args["imagefarm.disk_size"]
	if !hasSerial && !hasSize {
		return nil, nil
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if serial == "" || err != nil || n <= 0 {
		return nil, fmt.Errorf("imagefarm.disk_serial=%q imagefarm.disk_size=%q: want a disk's serial and its size in bytes, both", serial, size)
	}
	return &Want{Serial: serial, Size: n}, nil
}

// parseBootIF reads pxelinux's BOOTIF=01-aa-bb-cc-dd-ee-ff: the ARP
// hardware type (01, Ethernet) and the MAC.
func parseBootIF(s string) (string, error) {
	hw, mac, ok := strings.Cut(s, "-")
	if ok && hw == "01" {
		if a, err := net.ParseMAC(strings.ReplaceAll(mac, "-", ":")); err == nil && len(a) == 6 {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("BOOTIF=%q: want 01-aa-bb-cc-dd-ee-ff (an Ethernet MAC)", s)
}

// splitCmdline splits a kernel command line into its parameters as the
// kernel does (lib/cmdline.c, next_arg): words split at spaces outside
// double quotes, a quoted value's quotes removed, a word without '='
// present with value "". A later value of a parameter replaces an
// earlier one. u-root's pkg/cmdline reads only /proc/cmdline and panics
// on a lone quote; this must not, as PID 1.
func splitCmdline(s string) map[string]string {
	args := map[string]string{}
	for s = strings.TrimLeft(s, " \t\n"); s != ""; s = strings.TrimLeft(s, " \t\n") {
		end, inQuote := 0, false
		for ; end < len(s); end++ {
			c := s[end]
			if !inQuote && (c == ' ' || c == '\t' || c == '\n') {
				break
			}
			if c == '"' {
				inQuote = !inQuote
			}
		}
		word := s[:end]
		s = s[end:]
		if strings.HasPrefix(word, `"`) { // "key=value with spaces"
			word = strings.TrimSuffix(word[1:], `"`)
		}
		key, val, _ := strings.Cut(word, "=")
		if strings.HasPrefix(val, `"`) {
			val = strings.TrimSuffix(val[1:], `"`)
		}
		args[key] = val
	}
	return args
}
