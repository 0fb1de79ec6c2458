package netboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// A transfer waits tftpTimeout for each acknowledgement and sends a block
// again tftpRetries times before it gives up: a firmware on the LAN answers
// in milliseconds (and sends its ACK again itself), and a transfer whose
// client went away ends within 4 s. pin/tftp has no way to end a transfer
// that waits for an ACK sooner, so Run returns up to 4 s after its context
// ends when a client stopped answering mid-transfer; the others end at
// their next block.
const (
	tftpTimeout = time.Second
	tftpRetries = 3
)

// newTFTP returns the TFTP server: reads of boot files only, no writes.
// Options: blksize (up to the interface's MTU) and tsize. pin/tftp
// answers no windowsize (RFC 7440): a client that asks for one gets an
// OACK without it and acknowledges every block, as RFC 7440 says.
func (s *Service) newTFTP(ctx context.Context) *tftp.Server {
	ts := tftp.NewServer(func(path string, rf io.ReaderFrom) error { return s.tftpRead(ctx, path, rf) }, nil)
	ts.SetTimeout(tftpTimeout)
	ts.SetRetries(tftpRetries)
	ts.SetBackoff(func(int) time.Duration { return 0 }) // the timeout is the wait
	ts.SetHook(tftpHook{s.log})
	return ts
}

// tftpRead sends one boot file, or refuses the path with a log line that
// names it.
func (s *Service) tftpRead(ctx context.Context, path string, rf io.ReaderFrom) error {
	out := rf.(tftp.OutgoingTransfer)
	peer := out.RemoteAddr()
	addr, _ := netip.AddrFromSlice(peer.IP.To4())
	log := s.log.With("path", ident.Quote(path), "client", addr.String())
	src, size, err := s.tftpSource(ctx, path, Client{Addr: addr})
	if err != nil {
		if errors.Is(err, ErrNotBootFile) {
			s.logRefusal(log, path, err)
			return fmt.Errorf("%s is not a boot file of this server", ident.Quote(path))
		}
		log.Error("tftp open", "err", err)
		return errors.New("the boot file cannot be read; see the boot service's log")
	}
	defer src.Close()
	out.SetSize(size)
	start := time.Now()
	n, err := rf.ReadFrom(ctxReader{ctx, src})
	switch {
	case err != nil && n == 0 && strings.Contains(err.Error(), "code=8"):
		// UEFI asks for the options (tsize) first and stops the transfer
		// (TFTP error 8), then asks again for the file.
		log.Debug("tftp size asked", "size", size)
		return nil
	case err != nil:
		log.Warn("tftp transfer ended early", "bytes", n, "size", size, "err", err)
		return nil // pin/tftp has told the client
	}
	log.Info("tftp sent", "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// probes are the files shim and GRUB look for on every boot and do without:
// shim 16's revocation lists and certificate, GRUB's module lists. Not
// serving them is normal, so it is logged at debug, not as a warning.
var probes = map[string]bool{
	"revocations_sbat.efi": true, "revocations_sku.efi": true, "shim_certificate_0.efi": true,
	"grub/x86_64-efi/command.lst": true, "grub/x86_64-efi/fs.lst": true, "grub/x86_64-efi/crypto.lst": true,
	"grub/x86_64-efi/terminal.lst": true,
}

// logRefusal logs a path that is not a boot file: a warning, naming it,
// unless it is one of the probes.
func (s *Service) logRefusal(log *slog.Logger, path string, err error) {
	if probes[strings.TrimPrefix(path, "/")] {
		log.Debug("tftp not served: an optional file the signed chain looks for")
		return
	}
	log.Warn("tftp refused: not a boot file (TFTP serves the iPXE binaries and the signed chain, nothing else)", "err", err)
}

// ctxReader stops a transfer when the service stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// tftpHook logs what pin/tftp saw: the options of each transfer, and the
// packets it could not use.
type tftpHook struct{ log *slog.Logger }

func (h tftpHook) OnSuccess(st tftp.TransferStats) {
	h.log.Debug("tftp transfer done", "path", ident.Quote(st.Filename), "client", st.RemoteAddr.String(),
		"options", fmt.Sprint(st.Opts), "datagrams", st.DatagramsSent)
}

func (h tftpHook) OnFailure(st tftp.TransferStats, err error) {
	if st.Filename == "" {
		// A packet that is not a request (garbage, a stray ACK): nothing
		// was started, and a flood of them must not flood the log.
		h.log.Debug("tftp packet ignored", "err", err)
		return
	}
	h.log.Debug("tftp transfer failed", "path", ident.Quote(st.Filename), "client", st.RemoteAddr.String(), "err", err)
}
