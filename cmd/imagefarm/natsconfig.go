package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/userpath"
)

func newNATSConfigCmd() *cobra.Command {
	var (
		dir    string
		nodes  []string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "nats-config --dir DIR --node ID [--node ID ...]",
		Short: "Write the NATS users of the controller and each imager node, with least-privilege permissions",
		Long: `Write, into --dir, the authorization block for nats-server.conf to include
(` + natsauth.ServerConfigFile + `: each user's bcrypt password hash and permissions) and a
credentials file for the controller (` + natsauth.ControllerCredsFile + `) and for each node
(node-ID.nats-creds), to pass with --nats-creds. All are readable by their owner only.

The controller may use the imagefarm subjects, the JetStream API and the KV
buckets. An imager may only read and ack its own node's assignments: it cannot
publish an assignment, read another node's, or manage streams, consumers or KV.

Run it again with every node to add one: users whose credentials file is already
in --dir keep their password.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(nodes) == 0 {
				return errors.New("no nodes: pass --node ID for every imager node")
			}
			if err := userpath.MakeFolder(dir, 0o700); err != nil {
				return fmt.Errorf("--dir: %w", err)
			}
			if err := natsauth.Generate(dir, nodes); err != nil {
				return err
			}
			if asJSON {
				creds := []string{filepath.Join(dir, natsauth.ControllerCredsFile)}
				for _, n := range nodes {
					creds = append(creds, filepath.Join(dir, natsauth.ImagerCredsFile(n)))
				}
				return printJSON(cmd.OutOrStdout(), natsConfigJSON{ServerConfig: filepath.Join(dir, natsauth.ServerConfigFile), Credentials: creds})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %d credentials files; restart or reload nats-server\n",
				filepath.Join(dir, natsauth.ServerConfigFile), len(nodes)+1)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "folder to write the server's authorization block and the credentials files to")
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "an imager node id (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the files written as JSON")
	return cmd
}

// natsConfigJSON is what nats-config wrote, as --json prints it.
type natsConfigJSON struct {
	ServerConfig string   `json:"server_config"`
	Credentials  []string `json:"credentials"`
}
