package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// rolloutRow is one device of a rollout's production record.
type rolloutRow struct {
	Serial  string    `json:"serial"`
	Model   string    `json:"model"`
	Digest  string    `json:"digest"`
	When    time.Time `json:"when"`
	Job     string    `json:"job"`
	Task    string    `json:"task"`
	Wave    uint32    `json:"wave"`
	Result  string    `json:"result"`
	Reason  string    `json:"reason,omitempty"`
	Device  string    `json:"device"`
	Rollout string    `json:"rollout"`
}

var rolloutColumns = []string{"serial", "model", "digest", "when", "job", "task", "wave", "result", "reason", "device", "rollout"}

func (r rolloutRow) csv() []string {
	when := ""
	if !r.When.IsZero() {
		when = r.When.UTC().Format(time.RFC3339)
	}
	return []string{r.Serial, r.Model, r.Digest, when, r.Job, r.Task, fmt.Sprint(r.Wave), r.Result, r.Reason, r.Device, r.Rollout}
}

// rolloutReport is the production record of rollouts: each device they
// took, with the model as SMBIOS named it.
func rolloutReport(rs []*imagefarmv1.Rollout) []rolloutRow {
	var rows []rolloutRow
	for _, r := range rs {
		for _, d := range r.GetDevices() {
			row := rolloutRow{Serial: d.GetSerial(), Model: d.GetModel(), Digest: r.GetManifestDigest(), Job: d.GetJobId(), Task: d.GetTaskId(),
				Wave: d.GetWave(), Result: enumName(d.GetResult()), Reason: d.GetReason(), Device: d.GetDeviceId(), Rollout: r.GetId()}
			if d.GetWriteTime() != nil {
				row.When = d.GetWriteTime().AsTime()
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func newRolloutReportCmd(g *globals) *cobra.Command {
	var asCSV, all bool
	cmd := &cobra.Command{
		Use:   "report [MODEL] --csv | --json",
		Short: "The production record of rollouts: device serial, model, digest, when, job, result",
		Long: `Print the production record of the open rollouts (--all: ended ones too), or
of one model's: one row per device a rollout took, with its serial, model (as
SMBIOS named it), the digest written, when its write ended, its job and task,
the wave (0 is the first article), and the result with why it failed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asCSV == g.json {
				return fmt.Errorf("give --csv or --json")
			}
			rs, err := listRollouts(cmd, g, args, all)
			if err != nil {
				return err
			}
			rows := rolloutReport(rs)
			if g.json {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			return printCSV(cmd.OutOrStdout(), rolloutColumns, rows)
		},
	}
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV with a header row")
	cmd.Flags().BoolVar(&all, "all", false, "ended rollouts too")
	cmd.Flags().BoolVar(&g.json, "json", false, "print a JSON array")
	return cmd
}
