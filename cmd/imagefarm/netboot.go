package main

import "github.com/spf13/cobra"

func newNetbootCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netboot",
		Short: "Boot laptops from the network into the farm's deploy environment",
	}
	cmd.AddCommand(newNetbootBuildEnvCmd(g), newNetbootServeCmd(g))
	return cmd
}
