package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the client API's tokens (admin): create, ls, revoke",
		Long: `Every call to the controller's client API carries a bearer token (--token or
IMAGEFARM_TOKEN) whose role the call needs: a viewer reads jobs, nodes, drives,
images and the audit trail; an operator also submits and cancels jobs; an admin
also records image changes and manages tokens. The controller keeps only a hash
of each token. The first admin token comes from imagefarm controller
--bootstrap-token-file FILE (written when the farm has no token yet).`,
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenLsCmd(g), newTokenRevokeCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var name, role string
	cmd := &cobra.Command{
		Use:   "create --name NAME --role viewer|operator|admin",
		Short: "Create a token and print its secret, which is shown this once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ident.TokenName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			r, err := parseEnum("role", imagefarmv1.Role(0).Descriptor(), role)
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.CreateToken(cmd.Context(), &imagefarmv1.CreateTokenRequest{Name: name, Role: imagefarmv1.Role(r)})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetSecret())
			fmt.Fprintf(cmd.ErrOrStderr(), "token %q (id %s, %s): keep the secret above, it is not shown again\n",
				resp.GetToken().GetName(), resp.GetToken().GetId(), enumName(resp.GetToken().GetRole()))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "who or what the token is for (unique)")
	cmd.Flags().StringVar(&role, "role", "", "viewer, operator or admin")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the token and its secret as JSON")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("role")
	return cmd
}

func newTokenLsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListTokens(cmd.Context(), &imagefarmv1.ListTokensRequest{})
			if err != nil {
				return err
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), resp.GetTokens())
			}
			return printTokens(cmd.OutOrStdout(), resp.GetTokens())
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printTokens(w io.Writer, ts []*imagefarmv1.Token) error {
	tw := newNotedTable(w)
	tw.rowf("NAME\tID\tROLE\tCREATED\tCREATED BY")
	for _, t := range ts {
		tw.rowf("%s\t%s\t%s\t%s\t%s", t.GetName(), t.GetId(), strings.ToLower(enumName(t.GetRole())), localTime(t.GetCreated()), dash(t.GetCreatedBy()))
	}
	return tw.flush()
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "revoke NAME|ID",
		Short: "Revoke a token: the controller refuses it from now on",
		Long: `Revoke the token with this name or id: the controller refuses its secret from
the next call on. A name or id that more than one token matches is refused, naming
them. The last admin token is revoked only with --force: create another admin
token first. Forced, the farm has no admin until a controller started with
--bootstrap-token-file writes a new admin token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.RevokeToken(cmd.Context(), &imagefarmv1.RevokeTokenRequest{NameOrId: args[0], Force: force})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp.GetToken())
			}
			t := resp.GetToken()
			by := "id"
			if t.GetName() == args[0] {
				by = "name"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %q (id %s, %s), matched by %s\n", t.GetName(), t.GetId(), strings.ToLower(enumName(t.GetRole())), by)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "revoke the last admin token too")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the revoked token as JSON")
	return cmd
}

// tokenOption sends g's token with every call. A token goes in plaintext
// (--insecure) only to a loopback address, where nobody on the network can
// read it; to another address the command refuses rather than leak it.
func tokenOption(g *globals, plaintext bool) ([]grpc.DialOption, error) {
	if g.token == "" {
		return nil, nil
	}
	if plaintext && !loopback(g.controller) {
		return nil, errors.New("refusing to send the token in plaintext (--insecure) to " + g.controller +
			": use TLS (--ca), or reach the controller on a loopback address (e.g. through an SSH tunnel)")
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(tokens.Bearer{Secret: g.token, Plaintext: plaintext})}, nil
}

// loopback reports whether addr (HOST:PORT) is on this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
