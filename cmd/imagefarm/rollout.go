package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Roll an image out to a model's devices: a first article, an approval, then waves that stop themselves",
	}
	cmd.AddCommand(newRolloutStartCmd(g), newRolloutStatusCmd(g), newRolloutReportCmd(g),
		newRolloutActionCmd(g, "approve", "Approve a model's first article that passed; the waves start (recorded with who)"),
		newRolloutActionCmd(g, "pause", "Stop a model's rollout taking devices; those under way finish"),
		newRolloutActionCmd(g, "resume", "Resume a paused rollout: the first article goes on, or the next wave starts"),
		newRolloutActionCmd(g, "abort", "End a model's open rollout and cancel its job"))
	return cmd
}

func newRolloutStartCmd(g *globals) *cobra.Command {
	var (
		all               bool
		to                string
		p                 imagefarmv1.RolloutPolicy
		sample, threshold int
	)
	cmd := &cobra.Command{
		Use:   "start MODEL|--all [--to REF]",
		Short: "Start a rollout: the model's image (or --to REF) on a sample first, then waves after approve",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sample > 1<<20 || threshold > 100 {
				return fmt.Errorf("--sample %d, --failure-threshold %d: the sample is at most a few thousand devices, the threshold at most 100 (%%)", sample, threshold)
			}
			p.SampleSize, p.FailureThresholdPercent = uint32(sample), uint32(threshold)
			req := &imagefarmv1.StartRolloutRequest{All: all, ImageRef: to, Policy: &p}
			if len(args) == 1 {
				req.Model = args[0]
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.StartRollout(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), resp.GetRollouts())
			}
			for _, r := range resp.GetRollouts() {
				fmt.Fprintf(cmd.OutOrStdout(), "rollout %s: %s gets %s (%s); first article on %d device(s)\n", r.GetId(), r.GetModel(),
					r.GetImageRef(), r.GetManifestDigest(), r.GetWaveCount())
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&all, "all", false, "every model with an image")
	fs.StringVar(&to, "to", "", "image ref to roll out instead of the model's")
	positiveIntVar(fs, &sample, "sample", 1, "devices in the first article")
	fs.Uint32Var(&p.WaveSize, "wave-size", 0, "devices per wave (or --wave-percent)")
	fs.Uint32Var(&p.WavePercent, "wave-percent", 0, "percentage of the model's known devices per wave (10 when neither is given)")
	fs.Uint32Var(&p.MaxInFlight, "max-in-flight", 0, "devices written at once at most (0: no limit)")
	positiveIntVar(fs, &threshold, "failure-threshold", 10, "a wave whose failures pass this percentage of its size pauses the rollout (1: any failure)")
	fs.BoolVar(&p.AutoApprove, "auto-approve", false, "approve the first article as soon as it passes")
	fs.BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newRolloutActionCmd(g *globals, verb, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " MODEL [--reason TEXT]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, model := cmd.Context(), args[0]
			var r *imagefarmv1.Rollout
			switch verb {
			case "approve":
				var resp *imagefarmv1.ApproveRolloutResponse
				resp, err = c.ApproveRollout(ctx, &imagefarmv1.ApproveRolloutRequest{Model: model, Reason: reason})
				r = resp.GetRollout()
			case "pause":
				var resp *imagefarmv1.PauseRolloutResponse
				resp, err = c.PauseRollout(ctx, &imagefarmv1.PauseRolloutRequest{Model: model, Reason: reason})
				r = resp.GetRollout()
			case "resume":
				var resp *imagefarmv1.ResumeRolloutResponse
				resp, err = c.ResumeRollout(ctx, &imagefarmv1.ResumeRolloutRequest{Model: model, Reason: reason})
				r = resp.GetRollout()
			default:
				var resp *imagefarmv1.AbortRolloutResponse
				resp, err = c.AbortRollout(ctx, &imagefarmv1.AbortRolloutRequest{Model: model, Reason: reason})
				r = resp.GetRollout()
			}
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout %s of %s: %s\n", r.GetId(), r.GetModel(), enumName(r.GetState()))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept in the audit record")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newRolloutStatusCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status [MODEL] [--all]",
		Short: "Per model: digest, first-article state, devices done/failed/pending, and the failures with reasons",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rs, err := listRollouts(cmd, g, args, all)
			if err != nil {
				return err
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), rs)
			}
			return printRollouts(cmd.OutOrStdout(), rs)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "ended rollouts too")
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func listRollouts(cmd *cobra.Command, g *globals, args []string, all bool) ([]*imagefarmv1.Rollout, error) {
	req := &imagefarmv1.ListRolloutsRequest{All: all}
	if len(args) == 1 {
		req.Model = args[0]
	}
	c, err := dialController(g)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	resp, err := c.ListRollouts(cmd.Context(), req)
	return resp.GetRollouts(), err
}

// rolloutCounts counts a rollout's devices by result.
func rolloutCounts(r *imagefarmv1.Rollout) (done, failed, pending int) {
	for _, d := range r.GetDevices() {
		switch d.GetResult() {
		case imagefarmv1.RolloutResult_ROLLOUT_RESULT_DONE:
			done++
		case imagefarmv1.RolloutResult_ROLLOUT_RESULT_FAILED:
			failed++
		default:
			pending++
		}
	}
	return done, failed, pending
}

// firstArticle says where a rollout's first article is.
func firstArticle(r *imagefarmv1.Rollout) string {
	switch {
	case r.GetApprovedBy() != "":
		return "approved by " + r.GetApprovedBy()
	case r.GetState() == imagefarmv1.RolloutState_ROLLOUT_STATE_AWAITING_APPROVAL:
		return "passed, awaiting approve"
	case r.GetState() == imagefarmv1.RolloutState_ROLLOUT_STATE_BLOCKED:
		return "failed"
	}
	return "under way"
}

func printRollouts(w io.Writer, rs []*imagefarmv1.Rollout) error {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no open rollouts (--all for ended ones; start one: imagefarm rollout start MODEL)")
		return nil
	}
	t := newNotedTable(w)
	t.row("MODEL", "STATE", "DIGEST", "FIRST ARTICLE", "WAVE", "DONE", "FAILED", "PENDING", "ROLLOUT")
	for _, r := range rs {
		done, failed, pending := rolloutCounts(r)
		t.row(r.GetModel(), enumName(r.GetState()), shortDigest(r.GetManifestDigest()), firstArticle(r),
			fmt.Sprintf("%d (%d)", r.GetWave(), r.GetWaveCount()), fmt.Sprint(done), fmt.Sprint(failed), fmt.Sprint(pending), r.GetId())
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.GetReason() != "" {
			fmt.Fprintf(w, "%s: %s\n", r.GetModel(), oneLine(r.GetReason()))
		}
		for _, d := range r.GetDevices() {
			if d.GetResult() == imagefarmv1.RolloutResult_ROLLOUT_RESULT_FAILED {
				fmt.Fprintf(w, "  failed: %s (wave %d, task %s): %s\n", oneLine(d.GetSerial()), d.GetWave(), d.GetTaskId(), oneLine(d.GetReason()))
			}
		}
	}
	return nil
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
