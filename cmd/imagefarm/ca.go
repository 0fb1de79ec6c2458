package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/pki"
)

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The farm's certificate authority: make it, and issue certificates for the controller, imagers and clients",
		Long: `The controller's gRPC is TLS. The farm CA issues the controller's server
certificate, one client certificate per imager node, which binds the node id
(as the URI imagefarm://node/ID) so that a node cannot report for another, and
client certificates for people and programs (imagefarm://client/NAME).

    imagefarm ca init --dir /etc/imagefarm/ca
    imagefarm ca issue --dir /etc/imagefarm/ca --controller --host ctl.depot.lan,10.0.0.5
    imagefarm ca issue --dir /etc/imagefarm/ca --node bench-3
    imagefarm ca issue --dir /etc/imagefarm/ca --client alice

Every host gets ca.crt; the controller gets controller.crt and .key, node ID
gets node-ID.crt and .key. Keep ca.key off the farm's hosts.`,
	}
	cmd.AddCommand(newCAInitCmd(), newCAIssueCmd())
	return cmd
}

// certJSON is a certificate ca init or ca issue made, as --json prints it.
type certJSON struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	Cert     string    `json:"cert"`
	Key      string    `json:"key"`
}

func newCAInitCmd() *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Make the farm CA in DIR: ca.crt and ca.key (never overwritten)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := pki.InitCA(dir)
			if err != nil {
				return fmt.Errorf("ca init: %w", err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), certJSON{Subject: ca.Cert.Subject.CommonName, NotAfter: ca.Cert.NotAfter,
					Cert: filepath.Join(dir, pki.CACertFile), Key: filepath.Join(dir, pki.CAKeyFile)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "farm CA %q, valid until %s:\n  %s  give it to the controller, every imager and every client\n  %s  mode 0600: it issues every certificate; keep it safe, off the farm's hosts\n",
				ca.Cert.Subject.CommonName, ca.Cert.NotAfter.Format(time.DateOnly),
				filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "folder of the CA")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the files made as JSON")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newCAIssueCmd() *cobra.Command {
	var (
		dir, out, node, client string
		controller             bool
		hosts                  []string
		validFor               time.Duration
		asJSON                 bool
	)
	cmd := &cobra.Command{
		Use:   "issue --dir DIR (--node ID | --controller --host HOST,... | --client NAME)",
		Short: "Issue a certificate signed by the farm CA: an imager node's, the controller's or a client's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := issueRequest(node, client, controller, hosts)
			if err != nil {
				return err
			}
			r.ValidFor = validFor
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			if out == "" {
				out = dir
			}
			certPath, keyPath, err := ca.IssueFiles(out, r)
			if err != nil {
				return fmt.Errorf("ca issue: %w", err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), certJSON{Subject: issued(r), NotAfter: time.Now().Add(validFor).UTC().Truncate(time.Second),
					Cert: certPath, Key: keyPath})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s, valid until %s:\n  %s\n  %s  mode 0600\n", issued(r),
				time.Now().Add(validFor).Format(time.DateOnly), certPath, keyPath)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "folder of the CA (imagefarm ca init)")
	fl.StringVar(&out, "out", "", "folder to write the certificate and key to (default: --dir)")
	fl.StringVar(&node, "node", "", "issue the client certificate of the imager node with this id")
	fl.BoolVar(&controller, "controller", false, "issue the controller's server certificate, for --host")
	fl.StringSliceVar(&hosts, "host", nil, "DNS names and IP addresses the controller is reached at (with --controller; repeatable or comma-separated)")
	fl.StringVar(&client, "client", "", "issue a client certificate for a person or program with this name")
	durationVar(fl, &validFor, "valid-for", pki.DefaultValidity, 1, "how long the certificate is valid")
	fl.BoolVar(&asJSON, "json", false, "print the files made as JSON")
	cmd.MarkFlagRequired("dir")
	cmd.MarkFlagsMutuallyExclusive("node", "controller", "client")
	cmd.MarkFlagsOneRequired("node", "controller", "client")
	return cmd
}

// issueRequest is the certificate the flags of ca issue ask for.
func issueRequest(node, client string, controller bool, hosts []string) (pki.Request, error) {
	switch {
	case controller && len(hosts) == 0:
		return pki.Request{}, errors.New("--controller needs --host: the DNS names and IP addresses imagers and clients reach it at")
	case controller:
		return pki.Request{Kind: pki.KindServer, Hosts: hosts}, nil
	case len(hosts) > 0:
		return pki.Request{}, errors.New("--host is for --controller")
	case node != "":
		return pki.Request{Kind: pki.KindNode, Name: node}, nil
	}
	return pki.Request{Kind: pki.KindClient, Name: client}, nil
}

// issued says what certificate r is, for people.
func issued(r pki.Request) string {
	if r.Kind == pki.KindServer {
		return fmt.Sprintf("controller certificate for %v", r.Hosts)
	}
	return fmt.Sprintf("%s certificate bound to imagefarm://%s/%s", r.Kind, r.Kind, r.Name)
}
