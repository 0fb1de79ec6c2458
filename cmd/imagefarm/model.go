package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newModelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Device models: the SMBIOS names their devices report, and the image, drivers and packages they get",
	}
	cmd.AddCommand(newModelAddCmd(g), newModelLsCmd(g), newModelShowCmd(g), newModelSetCmd(g), newModelAliasCmd(g))
	return cmd
}

// modelFlags are what a model gets, as add and set take them.
type modelFlags struct {
	vendor, image, drivers string
	provisioning, updates  []string
	hooks                  []string
}

func (mf *modelFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&mf.vendor, "vendor", "", "SMBIOS system manufacturer (e.g. HP)")
	fs.StringVar(&mf.image, "image", "", "image its devices get: a channel (universal:stable) or a version")
	fs.StringVar(&mf.drivers, "drivers", "", "driver bundle ref put on every device of the model a rollout images")
	fs.StringSliceVar(&mf.provisioning, "provisioning", nil, "provisioning package refs (repeatable)")
	fs.StringSliceVar(&mf.updates, "update", nil, "update package refs, in the order they apply (repeatable)")
	fs.StringSliceVar(&mf.hooks, "hook", nil, "customisation hook refs (repeatable)")
}

// model is the model the flags say, named name.
func (mf *modelFlags) model(name string, aliases []string) *imagefarmv1.Model {
	return &imagefarmv1.Model{Name: name, Vendor: mf.vendor, Aliases: aliases, ImageRef: mf.image, DriverBundleRef: mf.drivers,
		ProvisioningRefs: mf.provisioning, UpdateRefs: mf.updates, HookRefs: mf.hooks}
}

// changed are the model fields whose flags were given.
func (mf *modelFlags) changed(fs *pflag.FlagSet) []string {
	var out []string
	for flag, field := range map[string]string{"vendor": "vendor", "image": "image_ref", "drivers": "driver_bundle_ref",
		"provisioning": "provisioning_refs", "update": "update_refs", "hook": "hook_refs"} {
		if fs.Changed(flag) {
			out = append(out, field)
		}
	}
	slices.Sort(out)
	return out
}

func newModelAddCmd(g *globals) *cobra.Command {
	var (
		mf      modelFlags
		aliases []string
	)
	cmd := &cobra.Command{
		Use:   `add "PRODUCT NAME"`,
		Short: "Add a model: its SMBIOS product name exactly as its devices report it (imagefarm devices ls shows it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.AddModel(cmd.Context(), &imagefarmv1.AddModelRequest{Model: mf.model(args[0], aliases)})
			if err != nil {
				return err
			}
			return printModel(cmd.OutOrStdout(), g, resp.GetModel(), -1)
		},
	}
	mf.register(cmd.Flags())
	cmd.Flags().StringSliceVar(&aliases, "alias", nil, "another product name its devices report (repeatable)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newModelSetCmd(g *globals) *cobra.Command {
	var mf modelFlags
	cmd := &cobra.Command{
		Use:   "set MODEL [--image REF] [--drivers REF] [--provisioning REF]... [--update REF]... [--hook REF]...",
		Short: "Change what a model's devices get; only the flags given change (an empty value clears)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fields := mf.changed(cmd.Flags())
			if len(fields) == 0 {
				return fmt.Errorf("nothing to change: give --vendor, --image, --drivers, --provisioning, --update or --hook")
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.UpdateModel(cmd.Context(), &imagefarmv1.UpdateModelRequest{Name: args[0], Model: mf.model("", nil), Fields: fields})
			if err != nil {
				return err
			}
			return printModel(cmd.OutOrStdout(), g, resp.GetModel(), -1)
		},
	}
	mf.register(cmd.Flags())
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newModelAliasCmd(g *globals) *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "alias MODEL ALIAS... [--rm]",
		Short: "Add (or with --rm remove) product names a model's devices report besides its name",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			cur, err := c.GetModel(cmd.Context(), &imagefarmv1.GetModelRequest{Name: args[0]})
			if err != nil {
				return err
			}
			aliases := cur.GetModel().GetAliases()
			for _, a := range args[1:] {
				switch {
				case remove && !slices.Contains(aliases, a):
					return fmt.Errorf("model %q has no alias %q; its aliases: %s", cur.GetModel().GetName(), a, strings.Join(aliases, ", "))
				case remove:
					aliases = slices.DeleteFunc(aliases, func(x string) bool { return x == a })
				default:
					aliases = append(aliases, a)
				}
			}
			resp, err := c.UpdateModel(cmd.Context(), &imagefarmv1.UpdateModelRequest{Name: cur.GetModel().GetName(),
				Model: &imagefarmv1.Model{Aliases: aliases}, Fields: []string{"aliases"}})
			if err != nil {
				return err
			}
			return printModel(cmd.OutOrStdout(), g, resp.GetModel(), -1)
		},
	}
	cmd.Flags().BoolVar(&remove, "rm", false, "remove the aliases instead")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newModelLsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List models, and the devices of no known model with what SMBIOS said",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListModels(cmd.Context(), &imagefarmv1.ListModelsRequest{})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp)
			}
			return printModels(cmd.OutOrStdout(), resp)
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printModels(w io.Writer, resp *imagefarmv1.ListModelsResponse) error {
	if len(resp.GetModels()) == 0 {
		fmt.Fprintln(w, `no models (add one: imagefarm model add "PRODUCT NAME" --image REF)`)
	} else {
		t := newNotedTable(w)
		t.row("MODEL", "VENDOR", "ALIASES", "IMAGE", "DRIVERS")
		for _, m := range resp.GetModels() {
			t.row(m.GetName(), dash(m.GetVendor()), dash(strings.Join(m.GetAliases(), "; ")), dash(m.GetImageRef()), dash(m.GetDriverBundleRef()))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(resp.GetUnknown()) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nunknown model (never imaged by a rollout; add the model or an alias):")
	t := newNotedTable(w)
	t.row("VENDOR", "PRODUCT NAME", "DEVICES", "SERIALS")
	for _, u := range resp.GetUnknown() {
		t.row(dash(u.GetVendor()), dash(u.GetModel()), fmt.Sprint(len(u.GetSerials())), strings.Join(u.GetSerials(), " "))
	}
	return t.flush()
}

func newModelShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show MODEL",
		Short: "Show a model, by name or alias: its names and everything its devices get",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.GetModel(cmd.Context(), &imagefarmv1.GetModelRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp)
			}
			if err := printModel(cmd.OutOrStdout(), g, resp.GetModel(), int(resp.GetDevices())); err != nil {
				return err
			}
			return printModelPolicy(cmd.OutOrStdout(), resp.GetResetPolicies())
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

// printModel prints m; devices is how many devices of it the farm knows
// (-1: not asked).
func printModel(w io.Writer, g *globals, m *imagefarmv1.Model, devices int) error {
	if g.json {
		return printProto(w, m)
	}
	tw := table(w)
	rows := [][2]string{{"model", m.GetName()}, {"vendor", dash(m.GetVendor())}, {"aliases", dash(strings.Join(m.GetAliases(), "; "))},
		{"image", dash(m.GetImageRef())}, {"drivers", dash(m.GetDriverBundleRef())},
		{"provisioning", dash(strings.Join(m.GetProvisioningRefs(), " "))}, {"updates", dash(strings.Join(m.GetUpdateRefs(), " "))},
		{"hooks", dash(strings.Join(m.GetHookRefs(), " "))}, {"added", timeAgo(m.GetCreateTime()) + " by " + dash(m.GetCreatedBy())}}
	if devices >= 0 {
		rows = append(rows, [2]string{"devices", fmt.Sprint(devices)})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], oneLine(r[1]))
	}
	return tw.Flush()
}

// printModelPolicy says what the reset policy records say of a model.
func printModelPolicy(w io.Writer, ps []*imagefarmv1.ResetPolicy) error {
	if len(ps) == 0 {
		_, err := fmt.Fprintln(w, "reset policy: none for the model (its pools' or devices' records decide; off by default)")
		return err
	}
	for _, p := range ps {
		fmt.Fprintf(w, "reset policy: %s for %q, set by %s %s\n", enumName(p.GetState()), oneLine(p.GetName()), dash(p.GetSetBy()), timeAgo(p.GetSetTime()))
	}
	return nil
}
