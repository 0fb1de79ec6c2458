package netboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// ErrNotBootFile is returned for a path that is not one of the boot files:
// the service serves those and nothing else.
var ErrNotBootFile = errors.New("netboot: not a boot file")

// grubMachineDir is where GRUB finds each machine's generated config, by
// the MAC it booted from (grub/grub.cfg loads it).
const grubMachineDir = "grub/imagefarm/"

// tftpFiles maps the names TFTP serves to the files they are: the iPXE
// binaries, and for the signed chain shim and GRUB. The deploy
// environment, which the signed GRUB can only load over TFTP, is served
// by version (envFile).
func tftpFiles(c Config) map[string]string {
	files := map[string]string{
		"undionly.kpxe":    filepath.Join(c.Files.IPXEDir, "undionly.kpxe"),
		c.Files.UEFIBinary: filepath.Join(c.Files.IPXEDir, c.Files.UEFIBinary),
	}
	if c.Chains.any(ChainSigned) {
		files["shimx64.efi"] = c.Files.Shim
		files["grubx64.efi"] = c.Files.GRUB
	}
	return files
}

// source is one boot file's bytes: a file on disk or a generated config.
type source interface {
	io.ReadSeeker
	io.Closer
}

// readerCloser gives a generated config the shape of a file.
type readerCloser struct{ *strings.Reader }

func (readerCloser) Close() error { return nil }

// tftpSource opens what TFTP sends for the path a client asked for:
// exactly a name of tftpFiles (one leading '/' allowed, as GRUB sends
// them), grub/grub.cfg, a machine's GRUB config, or a deploy
// environment's file (envFile); anything else is ErrNotBootFile.
func (s *Service) tftpSource(ctx context.Context, path string, c Client) (source, int64, error) {
	name := strings.TrimPrefix(path, "/")
	if p, ok := s.tftp[name]; ok {
		return openFile(p)
	}
	if !s.cfg.Chains.any(ChainSigned) {
		return nil, 0, ErrNotBootFile
	}
	if p, ok := s.envFile(name); ok {
		return openFile(p)
	}
	if name == "grub/grub.cfg" {
		return generated([]byte(grubMain))
	}
	macText, inDir := strings.CutPrefix(name, grubMachineDir)
	macText, isCfg := strings.CutSuffix(macText, ".cfg")
	if !inDir || !isCfg {
		return nil, 0, ErrNotBootFile
	}
	mac, err := ParseMAC(macText)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrNotBootFile, err)
	}
	c.MAC, c.Arch, c.Chain = mac, ArchUEFI, ChainSigned
	cfg, err := s.grubConfig(ctx, c)
	if err != nil {
		return nil, 0, err
	}
	return generated(cfg)
}

func openFile(path string) (source, int64, error) {
	f, err := userpath.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func generated(b []byte) (source, int64, error) {
	return readerCloser{strings.NewReader(string(b))}, int64(len(b)), nil
}

// envFilePrefix starts the TFTP names of the deploy environment's files:
// env/ID/vmlinuz and env/ID/initramfs.
const envFilePrefix = "env/"

// envFile is the path of the deploy environment's file that the TFTP name
// names: envFilePrefix, a served version's id, vmlinuz or initramfs; or
// the current version's vmlinuz or initramfs.
func (s *Service) envFile(name string) (string, bool) {
	if env, ok := s.envs.current(); ok && !strings.Contains(name, "/") {
		return env.fileFor(name) // vmlinuz, initramfs: the current version
	}
	rest, ok := strings.CutPrefix(name, envFilePrefix)
	id, file, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "", false
	}
	env, ok := s.envs.byID(id)
	if !ok {
		return "", false
	}
	return env.fileFor(file)
}
