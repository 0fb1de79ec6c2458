package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// newDevicePolicyCmd is imagefarm device policy: the reset policy records.
func newDevicePolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Allow or deny reset and refresh for a pool, a model or a device (off by default)",
	}
	cmd.AddCommand(newDevicePolicySetCmd(g), newDevicePolicyLsCmd(g))
	return cmd
}

func newDevicePolicySetCmd(g *globals) *cobra.Command {
	var reset, model, serial, pool string
	cmd := &cobra.Command{
		Use:   "set --reset allow|deny (--model MODEL | --device SERIAL | --pool POOL)",
		Short: "Set the reset policy of a model, a device or a pool (admin); the most specific record decides",
		Long: `Reset and refresh jobs are off by default. An admin allows (or denies) them for the
devices of a pool, of an exact SMBIOS model, or for one device; a device's own record
decides over its model's, which decides over its pool's. Each change is audited.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &imagefarmv1.SetResetPolicyRequest{}
			switch reset {
			case "allow":
				req.State = imagefarmv1.ResetPermission_RESET_PERMISSION_ALLOW
			case "deny":
				req.State = imagefarmv1.ResetPermission_RESET_PERMISSION_DENY
			default:
				return fmt.Errorf("--reset %q: want allow or deny", reset)
			}
			n := 0
			for _, s := range []struct {
				v     string
				scope imagefarmv1.PolicyScope
			}{{model, imagefarmv1.PolicyScope_POLICY_SCOPE_MODEL}, {serial, imagefarmv1.PolicyScope_POLICY_SCOPE_DEVICE},
				{pool, imagefarmv1.PolicyScope_POLICY_SCOPE_POOL}} {
				if s.v != "" {
					n++
					req.Scope, req.Name = s.scope, s.v
				}
			}
			if n != 1 {
				return errors.New("give exactly one of --model MODEL, --device SERIAL or --pool POOL")
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SetResetPolicy(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp.GetPolicy())
			}
			return printPolicies(cmd.OutOrStdout(), []*imagefarmv1.ResetPolicy{resp.GetPolicy()})
		},
	}
	cmd.Flags().StringVar(&reset, "reset", "", "allow or deny")
	cmd.Flags().StringVar(&model, "model", "", "the devices of exactly this SMBIOS model")
	cmd.Flags().StringVar(&serial, "device", "", "one device, by its serial, id or MAC")
	cmd.Flags().StringVar(&pool, "pool", "", "the devices of this pool (imagefarm device set SERIAL --pool)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newDevicePolicyLsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the reset policy records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListResetPolicies(cmd.Context(), &imagefarmv1.ListResetPoliciesRequest{})
			if err != nil {
				return err
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), resp.GetPolicies())
			}
			return printPolicies(cmd.OutOrStdout(), resp.GetPolicies())
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printPolicies(w io.Writer, ps []*imagefarmv1.ResetPolicy) error {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no reset policies: reset is off for every device")
		return nil
	}
	t := newNotedTable(w)
	t.row("SCOPE", "NAME", "RESET", "SET BY", "SET")
	for _, p := range ps {
		t.row(enumName(p.GetScope()), p.GetName(), enumName(p.GetState()), dash(p.GetSetBy()), timeAgo(p.GetSetTime()))
	}
	return t.flush()
}

func newDeviceSetCmd(g *globals) *cobra.Command {
	var (
		pool   string
		hybrid bool
	)
	cmd := &cobra.Command{
		Use:   "set DEVICE [--pool POOL] [--hybrid-joined=true|false]",
		Short: "Set what the farm cannot read from a device: its pool, whether it is hybrid-joined (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &imagefarmv1.SetDeviceFactsRequest{Device: args[0]}
			if cmd.Flags().Changed("pool") {
				req.Pool = &pool
			}
			if cmd.Flags().Changed("hybrid-joined") {
				req.HybridJoined = &hybrid
			}
			if req.Pool == nil && req.HybridJoined == nil {
				return errors.New("nothing to set: give --pool POOL or --hybrid-joined=true|false")
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SetDeviceFacts(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp.GetDevice())
			}
			return printDevice(cmd.OutOrStdout(), resp.GetDevice(), nil)
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", `the pool the device belongs to ("" for none)`)
	cmd.Flags().BoolVar(&hybrid, "hybrid-joined", false, "the device is joined to on-premises AD and Azure AD: never reset it")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

// resetFlags are the flags of imagefarm device reset and refresh.
type resetFlags struct {
	image, model, pool, drivers, then, requestID string
	index                                        uint32
	keep                                         []string
}

func newDeviceResetCmd(g *globals, refresh bool) *cobra.Command {
	var rf resetFlags
	use, short := "reset", "Reset devices' Windows partition from a WIM, keeping Wi-Fi profiles, provisioning packages and --keep paths"
	if refresh {
		use, short = "refresh", "Reimage devices' Windows partition from a WIM, keeping nothing (the recovery partition stays)"
	}
	cmd := &cobra.Command{
		Use:   use + " (SERIAL... | --model MODEL | --pool POOL) --image REF [--index N] [--drivers REF] [--then reboot|poweroff]",
		Short: short,
		Long: short + `.
Each device runs it at its next network boot: its Windows partition is re-created in
place and the WIM's image applied; the EFI, MSR and recovery partitions are never
written. Refused at submit, nothing stored, when a device's reset policy does not allow
it (imagefarm device policy set), when it is hybrid-joined, or when the WIM's models
exclude its model. --model and --pool take the devices the farm knows at submit.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := rf.request(cmd, args, refresh)
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SubmitReset(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp.GetJob())
			}
			return printSubmitted(cmd.OutOrStdout(), resp.GetJob(), false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&rf.image, "image", "", "the WIM to apply, NAME:VERSION, NAME:CHANNEL or NAME@sha256:DIGEST (pinned to its digest at submit)")
	f.Uint32Var(&rf.index, "index", 1, "index of the image in the WIM")
	f.StringVar(&rf.model, "model", "", "every known device of exactly this SMBIOS model")
	f.StringVar(&rf.pool, "pool", "", "every known device of this pool")
	f.StringVar(&rf.drivers, "drivers", "", "driver bundle (kind drivers) staged for Windows to install; its models must include each device's")
	f.StringVar(&rf.then, "then", "reboot", "what each device does after its reset: reboot or poweroff")
	f.StringVar(&rf.requestID, "request-id", "", "id that makes the submit idempotent across retries (default: a new random id)")
	if !refresh {
		f.StringArrayVar(&rf.keep, "keep", nil, "a path on the Windows volume to keep too, from its root (ProgramData/Contoso/**; repeatable)")
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the job as JSON")
	return cmd
}

// request builds the SubmitResetRequest the flags and arguments describe.
func (rf *resetFlags) request(cmd *cobra.Command, serials []string, refresh bool) (*imagefarmv1.SubmitResetRequest, error) {
	if rf.image == "" {
		return nil, errors.New("--image REF: name the WIM to apply")
	}
	then, err := afterWrite(rf.then)
	if err != nil {
		return nil, err
	}
	id := rf.requestID
	if id == "" {
		id = rand.Text()
	}
	return &imagefarmv1.SubmitResetRequest{Serials: serials, Model: rf.model, Pool: rf.pool, ImageRef: rf.image, AfterWrite: then, RequestId: id,
		Spec: &imagefarmv1.ResetSpec{WimIndex: rf.index, KeepPaths: rf.keep, DriverBundleRef: rf.drivers, Refresh: refresh}}, nil
}
