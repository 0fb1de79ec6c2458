package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// reportRow is one finished drive of a job's production record.
type reportRow struct {
	Finished       time.Time `json:"finished"`
	Node           string    `json:"node"`
	Slot           string    `json:"slot"`
	SlotLabel      string    `json:"slot_label,omitempty"`
	Drive          string    `json:"drive"`
	Serial         string    `json:"serial"`
	SizeBytes      uint64    `json:"size_bytes"`
	Model          string    `json:"model,omitempty"`
	Result         string    `json:"result"`
	VerifiedDigest string    `json:"verified_digest,omitempty"`
	Failure        string    `json:"failure,omitempty"`
	Message        string    `json:"message,omitempty"`
	Task           string    `json:"task"`
	// Kept is a reset's keep-list: every kept file's hash before and after.
	Kept []keptRow `json:"kept,omitempty"`
	// ProfilesRemoved: a reset removed user profiles, apps and settings.
	ProfilesRemoved bool `json:"profiles_removed,omitempty"`
}

// keptRow is one file a reset kept.
type keptRow struct {
	Path         string `json:"path"`
	SizeBytes    uint64 `json:"size_bytes"`
	SHA256Before string `json:"sha256_before"`
	SHA256After  string `json:"sha256_after"`
}

// reportColumns are the CSV header, in the order of reportRow.csv.
var reportColumns = []string{"finished", "node", "slot", "slot_label", "drive", "serial", "size_bytes", "model",
	"result", "verified_digest", "failure", "message", "task"}

func (r reportRow) csv() []string {
	return []string{r.Finished.UTC().Format(time.RFC3339), r.Node, r.Slot, r.SlotLabel, r.Drive, r.Serial,
		strconv.FormatUint(r.SizeBytes, 10), r.Model, r.Result, r.VerifiedDigest, r.Failure, r.Message, r.Task}
}

// report is a job's production record: every task that ended, in the
// order it ended.
func report(job *imagefarmv1.Job) []reportRow {
	var rows []reportRow
	for _, t := range job.GetTasks() {
		if t.GetFinishTime() == nil {
			continue
		}
		d := t.GetDrive()
		row := reportRow{
			Finished: t.GetFinishTime().AsTime(), Node: t.GetNodeId(), Slot: t.GetSlot(), SlotLabel: t.GetSlotLabel(),
			Drive: d.GetId(), Serial: d.GetSerial(), SizeBytes: d.GetSizeBytes(), Model: d.GetModel(),
			Result: enumName(t.GetState()), VerifiedDigest: t.GetVerifiedDigest(), Task: t.GetId(),
		}
		if f := t.GetFailure(); f != nil {
			row.Failure, row.Message = enumName(f.GetReason()), f.GetMessage()
		}
		for _, k := range t.GetResetReport().GetKept() {
			row.Kept = append(row.Kept, keptRow{Path: k.GetPath(), SizeBytes: k.GetSizeBytes(), SHA256Before: k.GetSha256Before(), SHA256After: k.GetSha256After()})
		}
		row.ProfilesRemoved = t.GetResetReport().GetProfilesRemoved()
		rows = append(rows, row)
	}
	slices.SortStableFunc(rows, func(a, b reportRow) int {
		return cmp.Or(a.Finished.Compare(b.Finished), cmp.Compare(a.Task, b.Task))
	})
	return rows
}

func newJobReportCmd(g *globals) *cobra.Command {
	var asCSV bool
	cmd := &cobra.Command{
		Use:   "report ID [--csv | --json]",
		Short: "A job's production record: each finished drive's serial, slot, time and verified digest",
		Long: `Print the production record of a job: one row per drive whose task ended, in
the order they ended, with the node and slot it was in, its serial and size,
the result, the manifest digest it was read back and verified against, and why
it failed if it did. Drives still being written are left out until they end.
--csv gives a spreadsheet; --json an array of the same rows.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asCSV && g.json {
				return fmt.Errorf("--csv and --json: choose one")
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.GetJob(cmd.Context(), &imagefarmv1.GetJobRequest{JobId: args[0]})
			if err != nil {
				return err
			}
			rows, w := report(resp.GetJob()), cmd.OutOrStdout()
			switch {
			case g.json:
				return printJSON(w, rows)
			case asCSV:
				return printCSV(w, reportColumns, rows)
			}
			return printReport(w, resp.GetJob(), rows)
		},
	}
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV with a header row")
	cmd.Flags().BoolVar(&g.json, "json", false, "print a JSON array")
	return cmd
}

func printReport(w io.Writer, job *imagefarmv1.Job, rows []reportRow) error {
	fmt.Fprintf(w, "job %s %s: %d of %d drives verified\n", job.GetId(), enumName(job.GetState()), job.GetTaskCounts().GetDone(), wanted(job))
	if len(rows) == 0 {
		return nil
	}
	tw := newNotedTable(w)
	tw.rowf("FINISHED\tNODE/SLOT\tSERIAL\tSIZE\tRESULT\tVERIFIED DIGEST / FAILURE")
	for _, r := range rows {
		detail := r.VerifiedDigest
		if r.Failure != "" {
			detail = r.Failure + ": " + r.Message
		}
		tw.rowf("%s\t%s/%s\t%s\t%s\t%s\t%s", r.Finished.Local().Format(time.DateTime), r.Node, cmp.Or(r.SlotLabel, r.Slot, r.Drive),
			r.Serial, bytesIEC(int64(r.SizeBytes)), r.Result, detail)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if err := printKept(w, r); err != nil {
			return err
		}
	}
	return nil
}

// printKept prints a reset task's keep-list.
func printKept(w io.Writer, r reportRow) error {
	if len(r.Kept) == 0 && !r.ProfilesRemoved {
		return nil
	}
	fmt.Fprintf(w, "\ntask %s (%s) kept %s; user profiles, apps and settings removed: %v\n", r.Task, r.Node, plural(len(r.Kept), "file"), r.ProfilesRemoved)
	tw := newNotedTable(w)
	tw.rowf("PATH\tSIZE\tSHA-256 BEFORE\tSHA-256 AFTER")
	for _, k := range r.Kept {
		tw.rowf("%s\t%s\t%s\t%s", k.Path, bytesIEC(int64(k.SizeBytes)), k.SHA256Before, k.SHA256After)
	}
	return tw.flush()
}
