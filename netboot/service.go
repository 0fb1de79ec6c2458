package netboot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"
)

// Service is the boot service: DHCP (proxy or full), TFTP and HTTP.
type Service struct {
	cfg  Config
	log  *slog.Logger
	base string            // http://ADDR:PORT, the root of every URL given out
	tftp map[string]string // the names TFTP serves as files, and their paths
	dhcp *dhcpHandler
	envs envSet // the deploy environments served (SetEnv)
}

// New checks cfg (the interface and its address, the boot files, the DHCP
// range) and returns a service ready to Run.
func New(cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	subnet, err := cfg.resolveAddr()
	if err != nil {
		return nil, err
	}
	if err := cfg.check(subnet); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Log, tftp: tftpFiles(cfg),
		base: fmt.Sprintf("http://%s", netip.AddrPortFrom(cfg.Addr, cfg.HTTPPort))}
	s.dhcp = &dhcpHandler{mode: cfg.DHCP.Mode, addr: cfg.Addr, subnet: subnet, net: cfg.DHCP,
		base: s.base, uefi: cfg.Files.UEFIBinary, chains: cfg.Chains}
	if cfg.DHCP.Mode == DHCPFull {
		s.dhcp.leases = newLeases(cfg.DHCP)
	}
	if cfg.Files.Kernel != "" || cfg.Files.Initramfs != "" {
		env := DeployEnv{ID: cmp.Or(cfg.Files.EnvID, "local"), Kernel: cfg.Files.Kernel, Initramfs: cfg.Files.Initramfs}
		if err := s.SetEnv(env); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Run serves until ctx is cancelled, then stops every server: transfers in
// flight end at their next block.
func (s *Service) Run(ctx context.Context) error {
	tftpConn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.cfg.Addr, s.cfg.TFTPPort)))
	if err != nil {
		return fmt.Errorf("listen for TFTP: %w", err)
	}
	httpLn, err := net.Listen("tcp4", netip.AddrPortFrom(s.cfg.Addr, s.cfg.HTTPPort).String())
	if err != nil {
		tftpConn.Close()
		return fmt.Errorf("listen for HTTP: %w", err)
	}
	var dhcpConns []*net.UDPConn
	if s.cfg.DHCP.Mode != DHCPOff {
		if dhcpConns, err = s.listenDHCP(); err != nil {
			tftpConn.Close()
			httpLn.Close()
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	ts := s.newTFTP(ctx)
	hs := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	g.Go(func() error { return ts.Serve(tftpConn) })
	g.Go(func() error {
		if err := hs.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve HTTP: %w", err)
		}
		return nil
	})
	for _, c := range dhcpConns {
		g.Go(func() error { return s.serveDHCP(ctx, c) })
	}
	g.Go(func() error {
		<-ctx.Done()
		closeAll(dhcpConns)
		hs.Close()
		ts.Shutdown()
		return nil
	})
	if s.cfg.DHCP.Mode == DHCPProxy && s.cfg.Chains.any(ChainSigned) {
		s.log.Info("signed chain beside the site's DHCP server: Debian's signed GRUB (2.06) asks for grub/grub.cfg from the site DHCP server's next-server, not from this proxyDHCP service, so the site's DHCP server must name this service as next-server (siaddr)",
			"next_server", s.cfg.Addr.String())
	}
	s.log.Info("boot service ready", "addr", s.cfg.Addr.String(), "dhcp", s.cfg.DHCP.Mode.String(), "interface", s.cfg.Interface,
		"tftp_port", s.cfg.TFTPPort, "http", s.base, "uefi_chain", s.cfg.Chains.Default.String())
	return g.Wait()
}
