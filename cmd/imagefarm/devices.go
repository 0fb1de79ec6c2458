package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newDevicesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "devices",
		Aliases: []string{"device"},
		Short:   "List, show, reset and refresh the netbooted devices the farm knows; set their reset policy",
	}
	cmd.AddCommand(newDevicesLsCmd(g), newDevicesShowCmd(g), newDevicePolicyCmd(g), newDeviceSetCmd(g),
		newDeviceResetCmd(g, false), newDeviceResetCmd(g, true))
	return cmd
}

func newDevicesLsCmd(g *globals) *cobra.Command {
	var (
		model   string
		states  []string
		unknown bool
	)
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List devices: serial, model, state, last image written and when, last seen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseEnums[imagefarmv1.DeviceState]("state", imagefarmv1.DeviceState(0).Descriptor(), states)
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListDevices(cmd.Context(), &imagefarmv1.ListDevicesRequest{Model: model, States: st, UnknownModel: unknown})
			if err != nil {
				return err
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), resp.GetDevices())
			}
			return printDevices(cmd.OutOrStdout(), resp.GetDevices())
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "only devices of exactly this model")
	cmd.Flags().BoolVar(&unknown, "unknown-model", false, "only devices whose product name is no model's name or alias (never imaged by a rollout)")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only devices in these states: idle, booting, imaging (repeatable)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printDevices(w io.Writer, ds []*imagefarmv1.Device) error {
	if len(ds) == 0 {
		fmt.Fprintln(w, "no devices (a device is known once it has netbooted into the farm)")
		return nil
	}
	t := newNotedTable(w)
	t.row("SERIAL", "MODEL", "STATE", "LAST IMAGE", "WRITTEN", "LAST SEEN", "ID")
	for _, d := range ds {
		t.row(dash(d.GetSerial()), dash(d.GetModel()), enumName(d.GetState()), dash(d.GetLastImageRef()),
			timeAgo(d.GetLastWriteTime()), timeAgo(d.GetLastSeenTime()), d.GetId())
	}
	return t.flush()
}

func newDevicesShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show DEVICE",
		Short: "Show one device, by id, serial or MAC: identity, MACs, disks, last image, digest and job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.GetDevice(cmd.Context(), &imagefarmv1.GetDeviceRequest{Device: args[0]})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp.GetDevice())
			}
			return printDevice(cmd.OutOrStdout(), resp.GetDevice(), resp.GetResetPolicy())
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printDevice(w io.Writer, d *imagefarmv1.Device, pol *imagefarmv1.EffectiveResetPolicy) error {
	tw := table(w)
	reset := "-"
	if pol != nil {
		reset = pol.GetReason()
	}
	for _, row := range [][2]string{
		{"id", d.GetId()}, {"serial", dash(d.GetSerial())}, {"vendor", dash(d.GetVendor())}, {"model", dash(d.GetModel())},
		{"smbios uuid", dash(d.GetSmbiosUuid())}, {"macs", dash(strings.Join(d.GetMacs(), " "))}, {"arch", dash(d.GetArch())},
		{"state", enumName(d.GetState())}, {"task", dash(d.GetTaskId())},
		{"last image", dash(d.GetLastImageRef())}, {"last digest", dash(d.GetLastImageDigest())},
		{"written", timeAgo(d.GetLastWriteTime())}, {"by job", dash(d.GetLastJobId())},
		{"last seen", timeAgo(d.GetLastSeenTime())}, {"enrolled", timeAgo(d.GetEnrollTime())},
		{"pool", dash(d.GetPool())}, {"hybrid-joined", fmt.Sprint(d.GetHybridJoined())}, {"reset", reset},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.GetDisks()) == 0 {
		return nil
	}
	fmt.Fprintln(w, "disks:")
	t := newNotedTable(w)
	t.row("ID", "SERIAL", "SIZE", "TRANSPORT", "REMOVABLE")
	for _, k := range d.GetDisks() {
		t.row(k.GetId(), dash(k.GetSerial()), bytesIEC(int64(k.GetSizeBytes())), enumName(k.GetTransport()), fmt.Sprint(k.GetRemovable()))
	}
	return t.flush()
}
