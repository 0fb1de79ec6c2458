// Command imagefarm is the one binary of the imagefarm imaging farm: the
// controller, the imager, the all-in-one dev farm, and the clients of the
// catalog (image) and of the controller's API (job, nodes, token, audit, ...).
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imagefarm/imagefarm/deployenv/initproc"
	"github.com/imagefarm/imagefarm/internal/redact"
)

func main() {
	if initproc.IsInit(os.Getpid(), os.Args[0]) {
		initproc.Main() // the deploy environment's /init; never returns
	}
	ctx, stop := signalContext()
	cmd, err := newRootCmd().ExecuteContextC(ctx)
	stop()
	os.Exit(exitStatus(ctx, os.Stderr, cmd, err))
}

// exitError ends the program with status 1 without printing more: the
// command has already said what went wrong.
type exitError struct{ msg string }

func (e exitError) Error() string { return e.msg }

// globals are the flags every command shares.
type globals struct {
	store      string
	controller string
	logLevel   string
	debugAddr  string
	json       bool
	token      string // the client API's bearer token
	tls        tlsFlags
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "imagefarm",
		Short:         "A distributed USB/PXE imaging farm",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			if g.debugAddr != "" {
				return serveDebug(g.debugAddr)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.store, "store", os.Getenv("IMAGEFARM_STORE"),
		"image store: file:///PATH or s3://BUCKET/PREFIX?endpoint=HOST:PORT (env IMAGEFARM_STORE)")
	root.PersistentFlags().StringVar(&g.controller, "controller", os.Getenv("IMAGEFARM_CONTROLLER"),
		"controller gRPC address HOST:PORT (env IMAGEFARM_CONTROLLER)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.debugAddr, "debug-addr", "", "serve Go profiles and counters (/debug/pprof/, /debug/vars) on this address, e.g. 127.0.0.1:6060")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("IMAGEFARM_TOKEN"),
		"bearer token for the controller's client API (imagefarm token create) (env IMAGEFARM_TOKEN)")
	hideDefault(root.PersistentFlags(), "token", func(string) string { return "" })
	hideDefault(root.PersistentFlags(), "store", redact.URL)
	addTLSFlags(root, &g.tls)
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(newCACmd(), newNATSConfigCmd(), newKeyCmd())
	root.AddCommand(newImageCmd(g), newDevCmd(g), newDrivesCmd(g), newWriteCmd(g), newControllerCmd(g), newJobCmd(g), newNodesCmd(g), newImagerCmd(g), newMediaCmd(g), newAuditCmd(g), newTokenCmd(g), newNetbootCmd(g), newDevicesCmd(g), newModelCmd(g), newRolloutCmd(g))
	return root
}

// hideDefault keeps the default of flag name, taken from the environment,
// out of help when it holds a secret or may: help shows show(default), and
// no default when that is "". The flag's value is unchanged.
func hideDefault(fs *pflag.FlagSet, name string, show func(string) string) {
	f := fs.Lookup(name)
	f.DefValue = show(f.DefValue)
}
