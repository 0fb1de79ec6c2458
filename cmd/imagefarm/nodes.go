package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newNodesCmd(g *globals) *cobra.Command {
	var (
		pool   string
		states []string
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the farm's imager nodes: pool, state, drives, last heartbeat and version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseEnums[imagefarmv1.NodeState]("state", imagefarmv1.NodeState(0).Descriptor(), states)
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListNodes(cmd.Context(), &imagefarmv1.ListNodesRequest{Pool: pool, States: st})
			if err != nil {
				return err
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), resp.GetNodes())
			}
			return printNodes(cmd.OutOrStdout(), resp.GetNodes())
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "only nodes of this pool")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only nodes in these states: online, lost, draining (repeatable)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printNodes(w io.Writer, nodes []*imagefarmv1.Node) error {
	if len(nodes) == 0 {
		fmt.Fprintln(w, "no nodes")
		return nil
	}
	tw := newNotedTable(w)
	tw.rowf("ID\tPOOL\tSTATE\tDRIVES\tLAST HEARTBEAT\tVERSION")
	for _, n := range nodes {
		tw.rowf("%s\t%s\t%s\t%d (%d busy)\t%s\t%s", n.GetId(), dash(n.GetPool()), enumName(n.GetState()),
			n.GetDriveCount(), n.GetBusyDriveCount(), timeAgo(n.GetLastHeartbeatTime()), dash(n.GetVersion()))
	}
	return tw.flush()
}

// printFarmDrives is imagefarm drives with a controller: the drives of
// every node of the farm, as the controller knows them.
func printFarmDrives(cmd *cobra.Command, g *globals) error {
	c, err := dialController(g)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.ListDrives(cmd.Context(), &imagefarmv1.ListDrivesRequest{})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if g.json {
		return printProtos(w, resp.GetDrives())
	}
	if len(resp.GetDrives()) == 0 {
		fmt.Fprintln(w, "no drives")
		return nil
	}
	t := newNotedTable(w)
	t.row("NODE", "DRIVE", "SLOT/LABEL", "SIZE", "TRANSPORT", "STATE", "TASK")
	for _, d := range resp.GetDrives() {
		t.row(d.GetNodeId(), d.GetId(), dash(slotName(d.GetSlotLabel(), d.GetSlot())),
			bytesIEC(int64(d.GetSizeBytes())), enumName(d.GetTransport()), enumName(d.GetState()), driveTask(d))
		if r := d.GetRefusal(); r != nil {
			t.note("%s", r.GetMessage())
		}
	}
	return t.flush()
}

// driveTask is the task writing d, or the last one that ended on it since
// it was inserted ("last T"): a standing order does not take such a drive
// until it is re-inserted.
func driveTask(d *imagefarmv1.Drive) string {
	if d.GetTaskId() == "" && d.GetLastTaskId() != "" {
		return "last " + d.GetLastTaskId()
	}
	return dash(d.GetTaskId())
}

// slotName is the slot's human label when the node's config names it, else
// its by-path name.
func slotName(label, slot string) string {
	if label != "" {
		return label
	}
	return slot
}
