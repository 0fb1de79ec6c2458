package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/netboot"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// netbootServeFlags are the flags of imagefarm netboot serve.
type netbootServeFlags struct {
	iface, addr          string
	dhcp, dhcpRange      string
	router               string
	dns                  []string
	lease                time.Duration
	tftpPort, httpPort   uint16
	ipxeDir, uefiIPXE    string
	uefiChain            string
	chains               map[string]string
	shim, grub           string
	kernel, initramfs    string
	env, envCache        string
	envCheck             time.Duration
	winpe                winpeFlags
	trust                trustFlags
	kernelArgs, deployTo []string
	deviceController     string
}

func newNetbootServeCmd(g *globals) *cobra.Command {
	var f netbootServeFlags
	cmd := &cobra.Command{
		Use:   "serve --interface IFACE",
		Short: "Serve PXE, TFTP and HTTP so laptops on the LAN can netboot",
		Long: `Serve network boot on one LAN. By default it is a proxyDHCP server beside the
site's DHCP server: it answers only PXE clients (vendor class PXEClient or
HTTPClient, on ports 67 and 4011), with a boot file and no address.
--dhcp full makes it the DHCP server of an isolated bench network
(--dhcp-range); --dhcp off leaves DHCP to a site server that already sends
PXE clients here.

TFTP serves the boot binaries and nothing else: iPXE (Debian's ipxe package,
--ipxe-dir) for BIOS (undionly.kpxe) and UEFI (ipxe.efi, or --uefi-ipxe
snponly.efi), and the signed chain for UEFI with Secure Boot on: shimx64.efi
(Microsoft-signed, Debian's shim-signed) -> grubx64.efi (Debian-signed,
grub-efi-amd64-signed) -> a generated grub/grub.cfg -> the kernel and
initramfs. UEFI clients get the signed chain unless --uefi-chain ipxe, or
--chain MAC=ipxe for one machine. UEFI HTTP boot clients get ipxe.efi over
HTTP. iPXE, once running, gets its machine's script over HTTP, never iPXE
again.

What each machine boots is planned per boot. With --controller, the
controller plans it (DeviceService.PlanBoot, with --token, an operator's):
a machine a job wants boots the deploy environment with a one-time boot
token and the controller's address (--device-controller) on its kernel
command line;
every other machine boots its local disk (so PXE can stay first in a
laptop's boot order), and so does every machine while the controller
cannot be reached. Without --controller, every machine boots its local
disk except the MACs given with --deploy, which boot the deploy
environment.

The deploy environment is --env NAME:VERSION, an image imagefarm netboot
build-env pushed, fetched at start with its signature (--trusted-keys) and
every byte checked, or --kernel and --initramfs files; --kernel-arg adds
arguments to its kernel command line. A channel (--env NAME:CHANNEL) is
followed: every --env-check it is resolved again, and a version it moved to
is fetched and checked the same way and served to the next boots, without a
restart; a boot in progress keeps the files it started with.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			follow, err := f.fetchEnv(cmd.Context(), g, &cfg.Files)
			if err != nil {
				return err
			}
			winpe, removeScripts, err := f.fetchWinPE(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer removeScripts()
			cfg.WinPE = winpe
			if g.controller != "" {
				c, err := f.controllerPlanner(g, &cfg)
				if err != nil {
					return err
				}
				defer c.Close()
			}
			s, err := netboot.New(cfg)
			if err != nil {
				return err
			}
			return runServe(cmd.Context(), s, follow)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.iface, "interface", "", "network interface of the boot LAN (DHCP is served there; not needed with --dhcp off and --addr)")
	fl.StringVar(&f.addr, "addr", "", "IPv4 address clients reach this service at (default: the interface's first IPv4 address)")
	fl.StringVar(&f.dhcp, "dhcp", "proxy", "DHCP mode: proxy (beside the site's DHCP server), full (a bench network with no other DHCP server: --dhcp-range), off")
	fl.StringVar(&f.dhcpRange, "dhcp-range", "", "addresses --dhcp full leases: FIRST-LAST, inside the interface's subnet")
	fl.StringVar(&f.router, "dhcp-router", "", "router --dhcp full gives its clients (default: none)")
	fl.StringSliceVar(&f.dns, "dhcp-dns", nil, "DNS server --dhcp full gives its clients (repeatable)")
	durationVar(fl, &f.lease, "dhcp-lease", time.Hour, time.Minute, "how long a --dhcp full lease lasts")
	fl.Uint16Var(&f.tftpPort, "tftp-port", 69, "TFTP port")
	fl.Uint16Var(&f.httpPort, "http-port", 8080, "HTTP port of the scripts, the kernel and the initramfs")
	fl.StringVar(&f.ipxeDir, "ipxe-dir", netboot.DefaultIPXEDir, "folder of Debian's iPXE binaries (package ipxe)")
	fl.StringVar(&f.uefiIPXE, "uefi-ipxe", "ipxe.efi", "iPXE for UEFI: ipxe.efi (its own NIC drivers) or snponly.efi (the firmware's)")
	fl.StringVar(&f.uefiChain, "uefi-chain", "signed", "chain UEFI clients get: signed (shim and GRUB, boots with Secure Boot on) or ipxe")
	fl.StringToStringVar(&f.chains, "chain", nil, "chain of one UEFI machine: MAC=signed or MAC=ipxe (repeatable)")
	fl.StringVar(&f.shim, "shim", netboot.DefaultShim, "Microsoft-signed shim (package shim-signed)")
	fl.StringVar(&f.grub, "grub", netboot.DefaultGRUB, "Debian-signed network GRUB (package grub-efi-amd64-signed)")
	fl.StringVar(&f.env, "env", "", "the deploy environment from the catalog (--store): NAME:VERSION, NAME:CHANNEL or NAME@DIGEST of an image imagefarm netboot build-env --push made; fetched at start, its signature (--trusted-keys) and every byte checked")
	cache, _ := os.UserCacheDir()
	fl.StringVar(&f.envCache, "env-cache", filepath.Join(cache, "imagefarm", "netboot-env"), "folder --env environments are fetched into")
	durationVar(fl, &f.envCheck, "env-check", deployenv.DefaultFollowInterval, 0, "how often --env is resolved again, a moved channel's version served to the next boots (0: never)")
	f.trust.addTrustedKeys(cmd)
	fl.BoolVar(&f.trust.allowUnsigned, "allow-unsigned", false, "serve an --env environment without checking its signature when there is no --trusted-keys (unsafe: anyone who can write the store decides what laptops boot)")
	fl.StringVar(&f.kernel, "kernel", "", "deploy environment kernel, a file (signed, for the signed chain); --env takes it from the catalog instead")
	fl.StringVar(&f.initramfs, "initramfs", "", "deploy environment initramfs, a file; --env takes it from the catalog instead")
	fl.StringArrayVar(&f.kernelArgs, "kernel-arg", nil, "argument of the deploy environment's kernel command line, such as console=ttyS0 (repeatable)")
	fl.StringArrayVar(&f.deployTo, "deploy", nil, "MAC of a machine to boot into the deploy environment on every netboot (repeatable)")
	fl.StringVar(&f.winpe.winpe, "winpe", "", "WinPE to boot through wimboot: NAME:VERSION of a winpe bundle in the catalog (--store), fetched at start, checked as --env is")
	fl.StringVar(&f.winpe.wim, "winpe-wim", "", "with --winpe: the Windows image the deploy scripts apply, as media build --wim")
	fl.StringVar(&f.winpe.model, "winpe-model", "", "with --winpe: the exact model the deploy scripts are for, as media build --model")
	fl.StringVar(&f.winpe.wimboot, "wimboot", "", "wimboot binary (https://ipxe.org/wimboot; not in Debian, not shipped with imagefarm) that boots --winpe")
	fl.StringArrayVar(&f.winpe.deploy, "deploy-winpe", nil, "MAC of a machine to boot into WinPE on every netboot (repeatable; the iPXE chain)")
	fl.StringVar(&f.deviceController, "device-controller", "", "controller HOST:PORT as deploy environments reach it (default: --controller)")
	return cmd
}

// config turns the flags into the service's config.
func (f *netbootServeFlags) config() (netboot.Config, error) {
	var none netboot.Config
	mode, err := netboot.ParseDHCPMode(f.dhcp)
	if err != nil {
		return none, fmt.Errorf("--dhcp: %w", err)
	}
	cfg := netboot.Config{Interface: f.iface, TFTPPort: f.tftpPort, HTTPPort: f.httpPort, KernelArgs: f.kernelArgs, Log: slog.Default(),
		DHCP:  netboot.DHCPConfig{Mode: mode, Lease: f.lease},
		Files: netboot.Files{IPXEDir: f.ipxeDir, UEFIBinary: f.uefiIPXE, Shim: f.shim, GRUB: f.grub, Kernel: f.kernel, Initramfs: f.initramfs}}
	if cfg.Addr, err = optionalAddr("--addr", f.addr); err != nil {
		return none, err
	}
	if err := f.dhcpConfig(&cfg.DHCP); err != nil {
		return none, err
	}
	if cfg.Chains, err = f.chainConfig(); err != nil {
		return none, err
	}
	if cfg.Planner, err = f.planner(); err != nil {
		return none, err
	}
	return cfg, nil
}

// dhcpConfig reads the flags of --dhcp full into d.
func (f *netbootServeFlags) dhcpConfig(d *netboot.DHCPConfig) error {
	if d.Mode != netboot.DHCPFull {
		if f.dhcpRange != "" || f.router != "" || len(f.dns) > 0 {
			return fmt.Errorf("--dhcp-range, --dhcp-router and --dhcp-dns are for --dhcp full, not --dhcp %s", d.Mode)
		}
		return nil
	}
	first, last, ok := strings.Cut(f.dhcpRange, "-")
	var err error
	if d.First, err = netip.ParseAddr(first); err != nil || !ok {
		return fmt.Errorf("--dhcp-range %q: want FIRST-LAST, such as 198.18.0.100-198.18.0.199", f.dhcpRange)
	}
	if d.Last, err = netip.ParseAddr(last); err != nil {
		return fmt.Errorf("--dhcp-range %q: want FIRST-LAST, such as 198.18.0.100-198.18.0.199", f.dhcpRange)
	}
	if d.Router, err = optionalAddr("--dhcp-router", f.router); err != nil {
		return err
	}
	for _, s := range f.dns {
		a, err := optionalAddr("--dhcp-dns", s)
		if err != nil {
			return err
		}
		d.DNS = append(d.DNS, a)
	}
	return nil
}

// chainConfig reads --uefi-chain and --chain.
func (f *netbootServeFlags) chainConfig() (netboot.Chains, error) {
	var c netboot.Chains
	var err error
	if c.Default, err = netboot.ParseChain(f.uefiChain); err != nil {
		return c, fmt.Errorf("--uefi-chain: %w", err)
	}
	c.Override = map[string]netboot.Chain{}
	for macText, chain := range f.chains {
		mac, err := netboot.ParseMAC(macText)
		if err != nil {
			return c, fmt.Errorf("--chain: %w", err)
		}
		if c.Override[mac.String()], err = netboot.ParseChain(chain); err != nil {
			return c, fmt.Errorf("--chain %s: %w", macText, err)
		}
	}
	return c, nil
}

// planner is the default planner, or Static when --deploy names MACs.
func (f *netbootServeFlags) planner() (netboot.Planner, error) {
	if len(f.deployTo) == 0 && len(f.winpe.deploy) == 0 {
		return netboot.LocalDisk{}, nil
	}
	if len(f.deployTo) > 0 && (f.kernel == "" || f.initramfs == "") && f.env == "" {
		return nil, fmt.Errorf("--deploy boots the deploy environment: give it with --env NAME:VERSION (from the catalog), or --kernel FILE and --initramfs FILE")
	}
	st := netboot.Static{Deploy: map[string]bool{}, WinPE: map[string]bool{}}
	for flag, list := range map[string][]string{"--deploy": f.deployTo, "--deploy-winpe": f.winpe.deploy} {
		for _, s := range list {
			mac, err := netboot.ParseMAC(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", flag, err)
			}
			if st.Deploy[mac.String()] || st.WinPE[mac.String()] {
				return nil, fmt.Errorf("%s %s: the MAC is given twice (--deploy and --deploy-winpe): give each machine one", flag, s)
			}
			if flag == "--deploy" {
				st.Deploy[mac.String()] = true
			} else {
				st.WinPE[mac.String()] = true
			}
		}
	}
	return st, nil
}

// controllerPlanner connects to the controller and makes cfg's planner
// ask it. The deploy environment verifies the controller as this command
// does: in plaintext with --insecure (imagefarm.insecure=1), else over TLS.
func (f *netbootServeFlags) controllerPlanner(g *globals, cfg *netboot.Config) (*controllerClient, error) {
	if len(f.deployTo) > 0 || len(f.winpe.deploy) > 0 {
		return nil, fmt.Errorf("--deploy (or --deploy-winpe) and --controller both choose which machines deploy: give one (with --controller, submit a job with --device SERIAL)")
	}
	if cfg.Files.Kernel == "" || cfg.Files.Initramfs == "" {
		return nil, fmt.Errorf("--controller plans deploys: give the deploy environment with --env NAME:VERSION (from the catalog), or --kernel FILE and --initramfs FILE")
	}
	addr := cmp.Or(f.deviceController, g.controller)
	if err := netboot.CheckKernelArg("imagefarm.controller=" + addr); err != nil {
		return nil, fmt.Errorf("--device-controller: %w", err)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return nil, fmt.Errorf("--device-controller %q: want HOST:PORT as the deploy environment reaches the controller", addr)
	}
	c, err := dialController(g)
	if err != nil {
		return nil, err
	}
	p := netboot.ControllerPlanner{Devices: imagefarmv1.NewDeviceServiceClient(c.conn), Controller: addr}
	if g.tls.insecure {
		p.Args = []string{"imagefarm.insecure=1"}
	}
	cfg.Planner = p
	return c, nil
}

// fetchEnv fetches --env from the catalog into --env-cache, checked, and
// serves its kernel and initramfs. It returns what follows the ref (nil
// when there is none to follow).
func (f *netbootServeFlags) fetchEnv(ctx context.Context, g *globals, files *netboot.Files) (*deployenv.FollowConfig, error) {
	if f.env == "" {
		return nil, nil
	}
	if f.kernel != "" || f.initramfs != "" {
		return nil, errors.New("--env and --kernel/--initramfs both name the deploy environment: give one")
	}
	ref, err := catalog.ParseRef(f.env)
	if err != nil {
		return nil, fmt.Errorf("--env: %w", err)
	}
	fc, err := f.fetchConfig(g, ref)
	if err != nil {
		return nil, err
	}
	env, err := deployenv.Fetch(ctx, fc)
	if err != nil {
		return nil, err
	}
	files.Kernel, files.Initramfs, files.EnvID = env.Kernel(), env.Initrd(), envID(env)
	slog.Info("deploy environment", "ref", ref.String(), "digest", env.Digest, "kernel", env.Info.KernelRelease, "folder", env.Dir)
	if ref.Digest != "" || f.envCheck == 0 {
		return nil, nil
	}
	return &deployenv.FollowConfig{Fetch: fc, Current: env.Digest, Interval: f.envCheck}, nil
}

// envID names a deploy environment in the boot service's URLs: its
// manifest digest, shortened.
func envID(env *deployenv.Env) string { return strings.TrimPrefix(env.Digest, "sha256:")[:16] }

// runServe runs the boot service s, and the follower of its deploy
// environment's channel when there is one.
func runServe(ctx context.Context, s *netboot.Service, follow *deployenv.FollowConfig) error {
	if follow == nil {
		return s.Run(ctx)
	}
	follow.Serve = func(env *deployenv.Env) error {
		return s.SetEnv(netboot.DeployEnv{ID: envID(env), Kernel: env.Kernel(), Initramfs: env.Initrd()})
	}
	fl, err := deployenv.NewFollower(*follow)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(ctx) })
	g.Go(func() error { return fl.Run(ctx) })
	return g.Wait()
}

// optionalAddr parses an IPv4 address flag; "" is none.
func optionalAddr(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %q: want an IPv4 address such as 198.18.0.1", flag, s)
	}
	return a, nil
}
