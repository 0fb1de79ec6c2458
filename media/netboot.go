package media

import (
	"context"
	"errors"
	"fmt"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// DeployScripts returns the deploy scripts a key built from spec holds
// (deploy.cmd and the diskpart script, by file name, with CRLF line ends),
// without fetching or writing anything: the boot service's WinPE path
// injects the same scripts into WinPE. spec's inputs are checked as Build
// checks them (kinds, the exact-model rule, the WIM index); update
// packages, hooks and recovery drives are refused, since their scripts
// come from their files.
func DeployScripts(ctx context.Context, c *catalog.Catalog, spec Spec) (map[string][]byte, error) {
	if len(spec.Updates) > 0 || len(spec.Hooks) > 0 || spec.Recovery.Name != "" {
		return nil, errors.New("media: deploy scripts over the network take a WinPE, a WIM, drivers and provisioning packages; " +
			"update packages, hooks and recovery drives are for USB keys (media build)")
	}
	inputs, err := resolve(ctx, c, spec)
	if err != nil {
		return nil, err
	}
	b := &builder{c: c, spec: spec, inputs: inputs, wimParts: 1}
	for _, in := range inputs {
		if in.Role == "ppkg" {
			b.ppkgs = append(b.ppkgs, in.Ref.Name+".ppkg")
		}
	}
	files, err := writeScripts(b)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range files {
		out[f.Path] = f.Data
	}
	return out, nil
}

// Startnet is the startnet.cmd WinPE runs when booted from the network
// with the deploy scripts (wimboot puts it in X:\Windows\System32): it
// starts WinPE's network and runs deploy.cmd, which asks before it erases
// anything.
const Startnet = "@echo off\r\nwpeinit\r\necho == imagefarm: WinPE booted from the network; running deploy.cmd\r\n" +
	"call %SystemRoot%\\System32\\" + deployName + "\r\n"

// wimbootFiles are the files of a WinPE media folder wimboot boots from,
// each where Microsoft's media put it for BIOS or else for UEFI.
var wimbootFiles = []struct{ name, bios, uefi string }{
	{"BCD", "Boot/BCD", "EFI/Microsoft/Boot/BCD"},
	{"boot.sdi", "Boot/boot.sdi", "EFI/Microsoft/Boot/boot.sdi"},
	{"boot.wim", "sources/boot.wim", "sources/boot.wim"},
}

// WimbootFiles returns the paths of BCD, boot.sdi and boot.wim in dir, a
// WinPE bundle unpacked, by the names wimboot reads, in that order
// (names match regardless of case, as WinPE media vary in it). A missing
// one is ErrNotBootable, naming where it was looked for.
func WimbootFiles(dir string) ([][2]string, error) {
	var out [][2]string
	for _, f := range wimbootFiles {
		p, ok := findFold(dir, f.bios)
		if !ok {
			p, ok = findFold(dir, f.uefi)
		}
		if !ok {
			return nil, fmt.Errorf("%w: no %s (looked for %s and %s): wimboot needs BCD, boot.sdi and boot.wim from a WinPE media folder",
				ErrNotBootable, f.name, f.bios, f.uefi)
		}
		out = append(out, [2]string{f.name, p})
	}
	return out, nil
}
