package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/imagefarm/imagefarm/netboot"
)

// checkNetboot refuses --netboot flags that make no boot service, before
// anything is made.
func (f *devFlags) checkNetboot() error {
	switch {
	case f.netboot == "" && f.netbootEnv != "":
		return errors.New("--netboot-env is the deploy environment of the boot service: start it with --netboot INTERFACE|ADDRESS")
	case f.netboot != "" && f.netbootEnv == "":
		return fmt.Errorf("--netboot needs --netboot-env NAME:VERSION, the deploy environment it serves: build one with imagefarm netboot build-env --push deploy-env:1 --sign-key %s (the dev farm's signing key)",
			filepath.Join(f.dataDir, "signing", signKeyFile))
	}
	return nil
}

// devNetboot makes the boot service of the dev farm, as netboot serve
// --controller makes it: proxyDHCP on --netboot's interface (or no DHCP
// at --netboot's address), the iPXE chain, --netboot-env from the dev
// store checked against the dev farm's signing key and followed, and
// every boot planned by the dev controller. It returns what runs it and
// closes its connection.
func devNetboot(ctx context.Context, g *globals, f *devFlags) (run func(context.Context) error, closeConn func(), err error) {
	nf := netbootServeFlags{dhcp: "proxy", iface: f.netboot, uefiChain: "ipxe", env: f.netbootEnv, envCache: filepath.Join(f.dataDir, "netboot-env"),
		envCheck: f.netbootEnvCheck, httpPort: f.netbootHTTPPort, tftpPort: 69}
	if a, err := netip.ParseAddr(f.netboot); err == nil {
		nf.dhcp, nf.iface, nf.addr = "off", "", a.String()
	}
	nf.trust.trustedKeys = filepath.Join(f.dataDir, "signing", signPubFile)
	cfg, err := nf.config()
	if err != nil {
		return nil, nil, fmt.Errorf("--netboot: %w", err)
	}
	follow, err := nf.fetchEnv(ctx, g, &cfg.Files)
	if err != nil {
		return nil, nil, fmt.Errorf("--netboot-env: %w", err)
	}
	c, err := nf.controllerPlanner(g, &cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--netboot: %w", err)
	}
	s, err := netboot.New(cfg)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("--netboot: %w", err)
	}
	return func(ctx context.Context) error { return runServe(ctx, s, follow) }, func() { c.Close() }, nil
}
