package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/controller"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/dirlock"
	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/sample"
	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// devFlags are the flags of imagefarm dev.
type devFlags struct {
	dataDir       string
	demo          bool
	sizeText      string
	size          int64 // bytes, from sizeText
	drives        int
	driveSizeText string
	driveSize     int64 // bytes, from driveSizeText
	natsHost      string
	natsPort      int
	listen        string
	heartbeatTTL  time.Duration
	// The boot service (dev_netboot.go): off unless --netboot.
	netboot, netbootEnv string
	netbootEnvCheck     time.Duration
	netbootHTTPPort     uint16
}

func newDevCmd(g *globals) *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev [--demo]",
		Short: "Run an all-in-one farm: embedded NATS, the controller, one imager with virtual drives, a file store",
		Long: `Run the whole farm in one process under one data folder: an embedded NATS
server with JetStream, whose users are those of deploy (nats-auth/: the controller
and the node each log in with their own credentials and permissions), the controller, one imager (node dev-1, pool dev) whose drives
are sparse files, and a file:// image store. The controller serves TLS with
certificates of a CA made in the data folder (pki/), and the imager presents its
node certificate. The imager writes only images signed with the signing key made
in the data folder (signing/; IMAGEFARM_SIGN_KEY). It prints the addresses and certificate files to use from
another terminal and runs until interrupted. With --demo it makes a sample disk
image, pushes it, submits a job for every virtual drive, shows the live progress
and ends with the verified table and an independent check of every drive.

The farm lives in --data: run it again on the same folder and it is the same
farm; with a fixed --listen port the printed exports stay valid too. Standing
orders take only freshly inserted drives; imagefarm dev reinsert swaps written
virtual drives for blank ones.

--netboot INTERFACE|ADDRESS also starts the boot service (as netboot serve
--controller does, needing root for DHCP and TFTP): proxyDHCP on the interface
(or no DHCP, at the address), the iPXE chain, the deploy environment
--netboot-env from the dev store (signed with the dev farm's key), every boot
planned by the dev controller. Laptops reach the controller at --listen: give
an address on the boot network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDev(cmd, g, &f) },
	}
	cache, _ := os.UserCacheDir()
	cmd.PersistentFlags().StringVar(&f.dataDir, "data", filepath.Join(cache, "imagefarm", "dev"), "data folder of the dev farm")
	cmd.AddCommand(newDevReinsertCmd(g, &f))
	fl := cmd.Flags()
	fl.BoolVar(&f.demo, "demo", false, "push a sample disk image, write it to every virtual drive through the farm, verify, exit")
	fl.StringVar(&f.sizeText, "size", "256MiB", "size of the demo's sample disk image (bytes, or 64MiB, 1GiB)")
	fl.IntVar(&f.drives, "drives", 4, fmt.Sprintf("number of virtual drives (1 to %d)", maxDevDrives))
	fl.StringVar(&f.driveSizeText, "drive-size", "1GiB", "size of each virtual drive, sparse (bytes, or 64MiB, 1GiB; with --demo, at least --size)")
	fl.StringVar(&f.natsHost, "nats-host", "127.0.0.1", "address of the embedded NATS server")
	fl.IntVar(&f.natsPort, "nats-port", -1, "port of the embedded NATS server (-1: any free port)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "controller gRPC address (port 0: any free port)")
	durationVar(fl, &f.heartbeatTTL, "heartbeat-ttl", scheduler.DefaultHeartbeatTTL, 1, "a node silent for this long is lost")
	fl.StringVar(&f.netboot, "netboot", "", "also start the boot service: proxyDHCP on this network interface, or no DHCP at this IPv4 address (needs root; off by default)")
	fl.StringVar(&f.netbootEnv, "netboot-env", "", "with --netboot: the deploy environment, NAME:VERSION or NAME:CHANNEL in the dev store, signed with the dev farm's key")
	durationVar(fl, &f.netbootEnvCheck, "netboot-env-check", time.Minute, 0, "with --netboot: how often a --netboot-env channel is resolved again (0: never)")
	fl.Uint16Var(&f.netbootHTTPPort, "netboot-http-port", 8080, "with --netboot: HTTP port of the scripts, the kernel and the initramfs")
	return cmd
}

// maxDevDrives bounds --drives: the dev farm is one bench, not a depot.
const maxDevDrives = 64

// check reads the sizes and refuses flags that make no dev farm, before
// anything is made.
func (f *devFlags) check() error {
	var err error
	if f.size, err = parseSize("--size", f.sizeText); err != nil {
		return err
	}
	if f.driveSize, err = parseSize("--drive-size", f.driveSizeText); err != nil {
		return err
	}
	switch {
	case f.drives < 1 || f.drives > maxDevDrives:
		return fmt.Errorf("--drives %d: give 1 to %d virtual drives", f.drives, maxDevDrives)
	case f.driveSize < 1<<20 || f.driveSize%512 != 0:
		return fmt.Errorf("--drive-size %s: give at least 1 MiB (1048576 bytes), in a multiple of 512 bytes", f.driveSizeText)
	case f.demo && f.size < 1<<20:
		return fmt.Errorf("--size %s: the demo's sample image needs at least 1 MiB (1048576 bytes)", f.sizeText)
	case f.demo && f.driveSize < f.size:
		return fmt.Errorf("--drive-size %s is smaller than the demo's sample image (--size %s): give --drive-size %d or more, or a smaller --size",
			f.driveSizeText, f.sizeText, f.size)
	}
	return f.checkNetboot()
}

// parseSize reads a size flag: bytes, or a size such as 64MiB or 1GB.
func parseSize(flag, s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("%s %q: want a size in bytes, or such as 64MiB or 1GiB", flag, s)
	}
	return int64(n), nil
}

func runDev(cmd *cobra.Command, g *globals, f *devFlags) error {
	if err := f.check(); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.demo && !cmd.Flags().Changed("log-level") { // the demo's bars and tables say it all
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	// The data folder (its NATS store, node cache and drives with it) is
	// this farm's alone: a second one would fence its node.
	lock, err := dirlock.Acquire(f.dataDir, "data folder", "--data")
	if err != nil {
		return err
	}
	defer lock.Release()
	for _, d := range []string{"nats", "store", "cache", "drives"} {
		if err := os.MkdirAll(filepath.Join(f.dataDir, d), 0o755); err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
	}
	if g.store == "" {
		g.store = "file://" + filepath.Join(f.dataDir, "store")
	}
	drives, err := makeVirtualDrives(filepath.Join(f.dataDir, "drives"), f.drives, f.driveSize)
	if err != nil {
		return err
	}
	creds := filepath.Join(f.dataDir, "nats-auth")
	ns, err := startNATS(f, creds)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	ctlCreds, nodeCreds := filepath.Join(creds, natsauth.ControllerCredsFile), filepath.Join(creds, natsauth.ImagerCredsFile(devNode))
	cat, err := devCatalog(g, f)
	if err != nil {
		return err
	}
	defer cat.Cache().Close()
	certs, err := devCerts(filepath.Join(f.dataDir, "pki"), f.listen)
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(f.dataDir, "pki", "admin.token")
	if g.token, err = devToken(cmd.Context(), ns.ClientURL(), ctlCreds, tokenFile); err != nil {
		return err
	}
	keys, err := devSigningKey(filepath.Join(f.dataDir, "signing"))
	if err != nil {
		return err
	}
	signKey, err := catalog.LoadSigningKey(devSignKey(f))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	ctl, err := controller.New(controller.Config{NATSURL: ns.ClientURL(), NATSCreds: ctlCreds, Listen: f.listen, Catalog: cat,
		TLS: certs.server, ClientCAs: certs.clientCAs, HeartbeatTTL: f.heartbeatTTL, CatalogScanInterval: controller.DefaultCatalogScanInterval,
		TrustedKeys: keys, SignKey: signKey, Log: slog.Default()})
	if err != nil {
		return err
	}
	grp, ctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return ctl.Run(ctx) })
	addr, err := ctl.Addr(ctx)
	if err != nil {
		return err
	}
	g.controller = dialAddr(addr)
	agent, err := imager.NewAgent(imager.AgentConfig{NodeID: devNode, Pool: "dev", NATSURL: ns.ClientURL(), NATSCreds: nodeCreds,
		Controller: g.controller, TLS: certs.node, Catalog: cat, Drives: drive.Config{VirtualDir: filepath.Join(f.dataDir, "drives"),
			VirtualOnly: true, CacheDir: filepath.Join(f.dataDir, "cache")}, TrustedKeys: keys, Log: slog.Default()})
	if err != nil {
		return err
	}
	grp.Go(func() error { return agent.Run(ctx) })
	g.tls = certs.client
	if f.netboot != "" {
		run, closeConn, err := devNetboot(ctx, g, f)
		if err != nil {
			cancel()
			grp.Wait()
			return err
		}
		defer closeConn()
		grp.Go(func() error { return run(ctx) })
	}
	fmt.Fprintf(out, "dev farm in %s\n  NATS:       %s (users and credentials files in %s)\n  controller: %s (TLS; imagers need a certificate of the CA in %s)\n  store:      %s\n  drives:     %d × %s virtual drives on node %s (pool dev)\n",
		f.dataDir, ns.ClientURL(), creds, g.controller, filepath.Dir(g.tls.ca), g.store, len(drives), bytesIEC(f.driveSize), devNode)
	fmt.Fprintf(out, "from another terminal:\n  export IMAGEFARM_CONTROLLER=%s IMAGEFARM_STORE=%s \\\n    IMAGEFARM_CA=%s IMAGEFARM_TLS_CERT=%s IMAGEFARM_TLS_KEY=%s \\\n    IMAGEFARM_SIGN_KEY=%s IMAGEFARM_TOKEN=$(cat %s)\n",
		g.controller, g.store, g.tls.ca, g.tls.cert, g.tls.key, devSignKey(f), tokenFile)
	if !f.demo {
		fmt.Fprintf(out, "standing orders (job submit --count) take only freshly inserted drives; make written ones fresh with:\n  imagefarm dev reinsert --data %s --all\n", f.dataDir)
	}
	if f.demo {
		grp.Go(func() error {
			defer cancel()
			return runDemo(ctx, out, g, f, drives)
		})
	}
	if err := grp.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return devStopped(cmd, f)
}

// devStopped says how the farm ended once it stopped without a failure:
// interrupted (Ctrl-C, SIGTERM), which is how a dev farm is stopped, or
// at the end of the demo. An interrupted demo did not finish: its exit
// code says so.
func devStopped(cmd *cobra.Command, f *devFlags) error {
	if cmd.Context().Err() == nil {
		return nil // the demo ended
	}
	if f.demo {
		return errors.New("demo interrupted before it finished; the dev farm stopped")
	}
	fmt.Fprintf(cmd.OutOrStdout(), "dev farm stopped; its data stays in %s for the next imagefarm dev --data %s\n", f.dataDir, f.dataDir)
	return nil
}

// devCatalog opens the store with the dev node's cache.
func devCatalog(g *globals, f *devFlags) (*catalog.Catalog, error) {
	cache, err := catalog.OpenCache(filepath.Join(f.dataDir, "cache"), 4<<30)
	if err != nil {
		return nil, err
	}
	c, err := openCatalog(g, catalog.Options{Cache: cache})
	if err != nil {
		cache.Close()
		return nil, err
	}
	return c, nil
}

// devSigningKey makes the dev farm's signing key in dir once, and returns
// the ring of its public key that the dev imager trusts.
func devSigningKey(dir string) (*catalog.KeyRing, error) {
	if _, err := os.Stat(filepath.Join(dir, signKeyFile)); errors.Is(err, os.ErrNotExist) {
		if _, err := initSigningKey(dir, "imagefarm dev"); err != nil {
			return nil, err
		}
	}
	return catalog.LoadKeyRing(filepath.Join(dir, signPubFile))
}

func devSignKey(f *devFlags) string { return filepath.Join(f.dataDir, "signing", signKeyFile) }

// runDemo makes a disk-shaped sample image, pushes it, writes it through
// the farm to every virtual drive, and checks every drive with a hash
// computed here, independently of the farm's own verification.
func runDemo(ctx context.Context, out io.Writer, g *globals, f *devFlags, drives []string) error {
	src := filepath.Join(f.dataDir, "sample-disk.img")
	if err := writeSample(src, f.size); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmade a %s sample disk image (random, zeros and text) at %s\n", bytesIEC(f.size), src)
	ref := "sample-disk:" + time.Now().UTC().Format("20060102.150405")
	submit := []string{"job", "submit", ref, "--watch"}
	ids := make([]string, len(drives))
	for i, d := range drives {
		ids[i] = devNode + "/" + drive.VirtualID(filepath.Base(d))
		submit = append(submit, "--drive", ids[i])
	}
	if err := waitDevDrives(ctx, g, ids); err != nil {
		return err
	}
	for _, args := range [][]string{{"image", "push", ref, src, "--label", "source=demo", "--sign-key", devSignKey(f)}, submit} {
		fmt.Fprintf(out, "\n$ imagefarm %s\n", strings.Join(args, " "))
		sub := newRootCmd()
		sub.SetArgs(append(args, "--store", g.store, "--controller", g.controller, "--ca", g.tls.ca, "--tls-cert", g.tls.cert, "--tls-key", g.tls.key, "--token", g.token))
		sub.SetOut(out)
		sub.SetErr(out)
		if err := sub.ExecuteContext(ctx); err != nil {
			return err
		}
	}
	return checkDrives(out, src, drives, f.size)
}

// waitDevDrives waits until the controller knows every drive in ids
// (NODE/DRIVE): the imager's Hello may still be storing them.
func waitDevDrives(ctx context.Context, g *globals, ids []string) error {
	c, err := dialController(g)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		resp, err := c.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{})
		known := map[string]bool{}
		for _, d := range resp.GetDrives() {
			known[d.GetNodeId()+"/"+d.GetId()] = true
		}
		if err == nil && !slices.ContainsFunc(ids, func(id string) bool { return !known[id] }) {
			return nil
		}
		if !wait.Sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("the dev node did not report its virtual drives %s within 30s (last error: %v)", strings.Join(ids, ", "), err)
		}
	}
}

func writeSample(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = sample.WriteDiskImage(f, size, uint64(time.Now().UnixNano()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sample image: %w", err)
	}
	return nil
}

// makeVirtualDrives makes n sparse files of size bytes in dir (keeping
// existing ones) and returns their paths.
func makeVirtualDrives(dir string, n int, size int64) ([]string, error) {
	var paths []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("drive%d.img", i))
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err == nil {
			if fi, serr := f.Stat(); serr == nil && fi.Size() < size {
				err = f.Truncate(size)
			}
			f.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("virtual drive: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// checkDrives hashes the sample and the first size bytes of every drive
// here, independently of the farm's own verification.
func checkDrives(out io.Writer, src string, drives []string, size int64) error {
	want, err := fileSHA256(src, size)
	if err != nil {
		return err
	}
	for _, d := range drives {
		got, err := fileSHA256(d, size)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("demo: %s has sha256 %s, the sample %s", d, got, want)
		}
	}
	fmt.Fprintf(out, "\nchecked independently: all %d drives hold the sample's sha256 %s\n", len(drives), want)
	return nil
}

// fileSHA256 is the hex SHA-256 of the first n bytes of the file at path.
func fileSHA256(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
