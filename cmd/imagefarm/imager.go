package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/imagefarm/imagefarm/internal/redact"
	"github.com/imagefarm/imagefarm/internal/wire"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// imagerFlags are the flags of imagefarm imager.
type imagerFlags struct {
	nats      string
	natsCreds string
	nodeID    string
	pool      string
	labels    map[string]string
	heartbeat time.Duration
	ackWait   time.Duration
	cacheDir  string
	cacheSize string
	budget    time.Duration
	df        driveFlags
	trust     trustFlags
}

// retryBudgetUsage is the help of --storage-retry-budget, a flag of every
// command that pulls chunks for drives.
const retryBudgetUsage = "how long reading a chunk is retried while storage is unreachable before the write fails (counted from the first failing attempt, the S3 client's own retries included)"

func newImagerCmd(g *globals) *cobra.Command {
	var f imagerFlags
	cmd := &cobra.Command{
		Use:   "imager --node-id ID --nats URL --controller ADDR --store URL --tls-cert FILE --tls-key FILE --ca FILE",
		Short: "Run an imager node: report its drives to the controller and write the tasks it is assigned",
		Long: `Run an imager node. It keeps one status stream to the controller (hello with
the drive inventory, heartbeats, drives inserted and removed, task progress and
results, re-sent after a reconnect until acknowledged) and takes its assignments
from NATS JetStream. Assignments for the same job and image that arrive together
are written as one fan-out, so the image is fetched and decompressed once for all
their drives; every drive is read back and verified before its task is DONE. The
guards of "imagefarm write" apply to every drive.

The stream is TLS: the controller is verified against the farm CA (--ca), and
the node presents its certificate (--tls-cert, --tls-key), which binds its node
id: imagefarm ca issue --node ID makes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.agentConfig(g)
			if err != nil {
				return err
			}
			defer cfg.Catalog.Cache().Close()
			a, err := imager.NewAgent(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nats, "nats", envOr("IMAGEFARM_NATS", "nats://127.0.0.1:4222"), "NATS server URL (env IMAGEFARM_NATS)")
	hideDefault(fl, "nats", redact.URL)
	addNATSCredsFlag(cmd, &f.natsCreds, "node-ID.nats-creds")
	fl.StringVar(&f.nodeID, "node-id", os.Getenv("IMAGEFARM_NODE_ID"), "id of this node in the farm: letters, digits, '-' and '_' (env IMAGEFARM_NODE_ID)")
	fl.StringVar(&f.pool, "pool", "", "pool of this node, for job selectors")
	fl.StringToStringVar(&f.labels, "label", nil, "label of this node, for job selectors: KEY=VALUE (repeatable)")
	fl.DurationVar(&f.heartbeat, "heartbeat", 0, "heartbeat interval (default: what the controller asks for)")
	cache, _ := os.UserCacheDir()
	fl.StringVar(&f.cacheDir, "cache", filepath.Join(cache, "imagefarm", "node-cache"), "node cache folder (chunks downloaded once for all drives and jobs)")
	fl.StringVar(&f.cacheSize, "cache-size", "20GiB", "node cache size bound")
	durationVar(fl, &f.budget, "storage-retry-budget", catalog.DefaultRetryBudget, 1, retryBudgetUsage)
	addAckWaitFlag(cmd, &f.ackWait)
	addDriveFlags(cmd, &f.df)
	f.trust.add(cmd)
	fl.BoolVar(&f.trust.allowUnsigned, "allow-unsigned", false, "write images without checking their signatures when there is no --trusted-keys (unsafe: anyone who can write the store can wipe drives with anything)")
	return cmd
}

// agentConfig turns the flags into the agent's config, opening the image
// store and the node cache.
func (f *imagerFlags) agentConfig(g *globals) (imager.AgentConfig, error) {
	var none imager.AgentConfig
	switch {
	case f.nodeID == "":
		return none, errors.New("no node id: pass --node-id ID or set IMAGEFARM_NODE_ID")
	case ident.NodeID(f.nodeID) != nil:
		return none, fmt.Errorf("--node-id: %w", ident.NodeID(f.nodeID))
	case ident.Pool(f.pool) != nil:
		return none, fmt.Errorf("--pool: %w", ident.Pool(f.pool))
	case ident.Labels(f.labels) != nil:
		return none, fmt.Errorf("--label: %w", ident.Labels(f.labels))
	case g.controller == "":
		return none, errors.New("no controller: pass --controller HOST:PORT or set IMAGEFARM_CONTROLLER")
	case g.store == "":
		return none, errNoStore
	}
	tlsCfg, err := g.tls.nodeTLS(f.nodeID)
	if err != nil {
		return none, err
	}
	keys, err := f.trust.keyRing()
	if err != nil {
		return none, err
	}
	if keys == nil && !f.trust.allowUnsigned {
		return none, errors.New("no trusted keys: pass --trusted-keys FILE (the farm's signing.pub from imagefarm key init) or set IMAGEFARM_TRUSTED_KEYS; --allow-unsigned writes images nobody signed")
	}
	dcfg, err := f.df.config()
	if err != nil {
		return none, err
	}
	if dcfg.CacheDir == "" {
		dcfg.CacheDir = f.cacheDir
	}
	size, err := humanize.ParseBytes(f.cacheSize)
	if err != nil {
		return none, fmt.Errorf("--cache-size %q: %w", f.cacheSize, err)
	}
	cache, err := catalog.OpenCache(dcfg.CacheDir, int64(size))
	if err != nil {
		return none, err
	}
	cat, err := openCatalog(g, catalog.Options{Cache: cache, RetryBudget: f.budget})
	if err != nil {
		cache.Close()
		return none, err
	}
	return imager.AgentConfig{
		NodeID: f.nodeID, Pool: f.pool, Labels: f.labels, Version: buildVersion(),
		NATSURL: f.nats, NATSCreds: f.natsCreds, Controller: g.controller, TLS: tlsCfg, Insecure: g.tls.insecure, Catalog: cat, Drives: dcfg,
		TrustedKeys: keys, AllowUnsigned: f.trust.allowUnsigned, WriteWhileFetching: f.trust.writeWhileFetching,
		HeartbeatInterval: f.heartbeat, Dispatch: wire.Config{AckWait: f.ackWait}, Log: slog.Default(),
	}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// buildVersion is the module version the binary was built from, or
// "(devel)".
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
