package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit, follow, list and cancel jobs on the farm's controller",
	}
	cmd.AddCommand(newJobSubmitCmd(g), newJobCaptureCmd(g), newJobWatchCmd(g), newJobLsCmd(g), newJobCancelCmd(g), newJobReportCmd(g))
	return cmd
}

// submitFlags are the flags of imagefarm job submit.
type submitFlags struct {
	drives        []string
	count         uint32
	pool          string
	labels        map[string]string
	nodes         []string
	minSize       string
	removable     bool
	discard       bool
	checkCapacity bool
	parts         partitionFlags // partitions.go
	jobLabels     map[string]string
	requestID     string
	watch         bool
	devices       deviceFlags // job_devices.go
}

func newJobSubmitCmd(g *globals) *cobra.Command {
	var sf submitFlags
	cmd := &cobra.Command{
		Use:   "submit REF (--drive NODE/ID... | --count N [--pool P] [--label K=V]... [--node ID]... [--min-size SIZE] [--removable] | --device SERIAL... [--disk SERIAL] | --model MODEL --count N) [--then reboot|poweroff]",
		Short: "Submit a job that writes an image to named drives, or to N drives a selector matches",
		Long: `Submit a job to the controller. Name the drives (--drive NODE/ID, repeatable), or
ask for --count drives that a selector matches: the job is then a standing order that
also takes matching drives inserted after it was submitted, until COUNT are written.
A retried submit carries the same request id, so it never creates a second job.
With --watch, follow the job as imagefarm job watch does; the exit code is then 0
only if the job succeeded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := sf.request(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SubmitJob(cmd.Context(), req)
			if err != nil {
				return err
			}
			job, w := resp.GetJob(), cmd.OutOrStdout()
			switch {
			case g.json && sf.watch:
				err = printProtoLine(w, job)
			case g.json:
				return printProto(w, job)
			default:
				err = printSubmitted(w, job, sf.watch)
			}
			if err != nil || !sf.watch {
				return err
			}
			return watchJob(cmd, c, job.GetId(), g.json)
		},
	}
	sf.addFlags(cmd)
	cmd.Flags().BoolVar(&g.json, "json", false, "print the job as JSON; with --watch, the job and its events as JSON lines")
	return cmd
}

// addFlags defines the flags of imagefarm job submit that fill sf.
func (sf *submitFlags) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&sf.drives, "drive", nil, "drive to write, as NODE/DRIVE_ID (repeatable)")
	f.Uint32Var(&sf.count, "count", 0, "write this many drives that the selector flags match, including drives inserted later")
	f.StringVar(&sf.pool, "pool", "", "selector: only drives of nodes in this pool")
	f.StringToStringVar(&sf.labels, "label", nil, "selector: only drives of nodes with this label key=value (repeatable)")
	f.StringArrayVar(&sf.nodes, "node", nil, "selector: only drives of this node (repeatable)")
	f.StringVar(&sf.minSize, "min-size", "", "selector: only drives at least this large (16GB, 32GiB)")
	f.BoolVar(&sf.removable, "removable", false, "selector: only removable drives (--removable=false: only fixed ones)")
	f.BoolVar(&sf.discard, "discard", false, "discard each drive first and skip writing all-zero chunks")
	f.BoolVar(&sf.checkCapacity, "check-capacity", false, "check each drive's real capacity first and refuse counterfeit drives")
	sf.parts.add(f)
	f.StringToStringVar(&sf.jobLabels, "label-job", nil, "label key=value kept with the job, such as a ticket number (repeatable)")
	f.StringVar(&sf.requestID, "request-id", "", "id that makes the submit idempotent across retries (default: a new random id)")
	sf.devices.addFlags(f)
	f.BoolVar(&sf.watch, "watch", false, "follow the job until it is final, as imagefarm job watch")
}

// selectorFlags are the flags that only make sense with --count.
var selectorFlags = []string{"pool", "label", "node", "min-size", "removable"}

// request builds the SubmitJobRequest the flags describe.
func (sf *submitFlags) request(cmd *cobra.Command, ref string) (*imagefarmv1.SubmitJobRequest, error) {
	if err := sf.checkNames(ref); err != nil {
		return nil, err
	}
	parts, err := sf.parts.selection(sf.checkCapacity)
	if err != nil {
		return nil, err
	}
	changed := cmd.Flags().Changed
	req := &imagefarmv1.SubmitJobRequest{
		ImageRef: ref,
		Options: &imagefarmv1.JobOptions{Discard: sf.discard, CheckCapacity: sf.checkCapacity,
			Partitions: uint32s(parts.Restore), KeepPartitions: uint32s(parts.Keep)},
		Labels:    sf.jobLabels,
		RequestId: sf.requestID,
	}
	if req.RequestId == "" {
		req.RequestId = rand.Text()
	}
	if err := sf.devices.fill(changed, sf, req); err != nil || req.Targets != nil {
		return req, err
	}
	switch {
	case len(sf.drives) > 0 && changed("count"):
		return nil, errors.New("--drive and --count exclude each other: name the drives, or ask for a count of matching drives")
	case len(sf.drives) > 0:
		for _, name := range selectorFlags {
			if changed(name) {
				return nil, fmt.Errorf("--%s selects drives for --count; with --drive the drives are named", name)
			}
		}
		req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: sf.drives}}}
		return req, nil
	case !changed("count"):
		return nil, errors.New("say which drives to write: --drive NODE/ID (repeatable), or --count N with --pool, --label, --node, --min-size or --removable")
	}
	sel := &imagefarmv1.Selector{Pool: sf.pool, Labels: sf.labels, NodeIds: sf.nodes}
	if sf.minSize != "" {
		n, err := humanize.ParseBytes(sf.minSize)
		if err != nil {
			return nil, fmt.Errorf("--min-size %q: want a size such as 16GB or 32GiB", sf.minSize)
		}
		sel.MinSizeBytes = n
	}
	if changed("removable") {
		sel.Removable = &sf.removable
	}
	req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{Selector: sel, Count: sf.count}}}
	return req, nil
}

// checkNames refuses, before anything is sent, a name the controller
// would refuse: the same internal/ident rules, with the flag that gave it.
func (sf *submitFlags) checkNames(ref string) error {
	if err := ident.Ref(ref); err != nil {
		return err
	}
	for _, d := range sf.drives {
		if _, err := scheduler.ParseDriveRef(d); err != nil {
			return fmt.Errorf("--drive: %w", err)
		}
	}
	for _, n := range sf.nodes {
		if err := ident.NodeID(n); err != nil {
			return fmt.Errorf("--node: %w", err)
		}
	}
	if err := ident.Pool(sf.pool); err != nil {
		return fmt.Errorf("--pool: %w", err)
	}
	if err := ident.Labels(sf.labels); err != nil {
		return fmt.Errorf("--label: %w", err)
	}
	if err := ident.Labels(sf.jobLabels); err != nil {
		return fmt.Errorf("--label-job: %w", err)
	}
	if sf.requestID != "" {
		if err := ident.RequestID(sf.requestID); err != nil {
			return fmt.Errorf("--request-id: %w", err)
		}
	}
	return nil
}

func printSubmitted(w io.Writer, job *imagefarmv1.Job, watching bool) error {
	what := plural(len(job.GetTargets().GetDrives().GetDriveIds()), "drive")
	if isDeviceJob(job) {
		what = deviceTargetsText(job)
	}
	if so := job.GetTargets().GetStandingOrder(); so != nil {
		what = fmt.Sprintf("%s a selector matches (standing order)", plural(int(so.GetCount()), "drive"))
	}
	fmt.Fprintf(w, "job %s submitted: %s (%s) to %s\n", job.GetId(), job.GetImageRef(), job.GetManifestDigest(), what)
	if len(job.GetTasks()) > 0 {
		tw := newNotedTable(w)
		tw.rowf("TASK\tNODE\tDRIVE\tSLOT\tSTATE")
		for _, t := range job.GetTasks() {
			tw.rowf("%s\t%s\t%s\t%s\t%s", t.GetId(), t.GetNodeId(), t.GetDrive().GetId(),
				dash(slotName(t.GetSlotLabel(), t.GetSlot())), enumName(t.GetState()))
		}
		if err := tw.flush(); err != nil {
			return err
		}
	}
	if !watching {
		fmt.Fprintf(w, "follow it with: imagefarm job watch %s\n", job.GetId())
	}
	return nil
}

func newJobWatchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a job with a live bar per drive until it is final, then print every drive's result",
		Long: `Follow a job: its current state, then every change, with one live bar per drive,
until the job is final; then a table of every drive's result. A broken stream is
resumed after the last event seen, so nothing is missed or shown twice. With --json,
the events as JSON lines, then the final job. The exit code is 0 only if the job
succeeded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			return watchJob(cmd, c, args[0], g.json)
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print events as JSON lines, then the final job")
	return cmd
}

func newJobLsCmd(g *globals) *cobra.Command {
	var (
		states      []string
		image, node string
		limit       int
	)
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseEnums[imagefarmv1.JobState]("state", imagefarmv1.JobState(0).Descriptor(), states)
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			req := &imagefarmv1.ListJobsRequest{States: st, Image: image, NodeId: node}
			var jobs []*imagefarmv1.Job
			for limit <= 0 || len(jobs) < limit {
				resp, err := c.ListJobs(cmd.Context(), req)
				if err != nil {
					return err
				}
				jobs = append(jobs, resp.GetJobs()...)
				if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			if limit > 0 && len(jobs) > limit {
				jobs = jobs[:limit]
			}
			if g.json {
				return printProtos(cmd.OutOrStdout(), jobs)
			}
			return printJobs(cmd.OutOrStdout(), jobs)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&states, "state", nil, "only jobs in these states: pending, running, succeeded, partial, failed, canceled (repeatable)")
	f.StringVar(&image, "image", "", "only jobs of this image: a name matches every version, a ref or digest exactly")
	f.StringVar(&node, "node", "", "only jobs with a task on this node")
	f.IntVar(&limit, "limit", 100, "show at most this many jobs; 0 shows all")
	f.BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printJobs(w io.Writer, jobs []*imagefarmv1.Job) error {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return nil
	}
	t := newNotedTable(w)
	t.row("ID", "IMAGE", "STATE", "TASKS", "CREATED")
	for _, j := range jobs {
		tasks := fmt.Sprintf("%d/%d", j.GetTaskCounts().GetDone(), wanted(j))
		if n := j.GetTaskCounts().GetFailed(); n > 0 {
			tasks += fmt.Sprintf(" (%d failed)", n)
		}
		t.row(j.GetId(), j.GetImageRef(), enumName(j.GetState()), tasks, localTime(j.GetCreateTime()))
		if why := waitingReason(j); why != "" {
			t.note("waiting: %s", why)
		}
	}
	return t.flush()
}

// waitingReason is why a job that is not final waits, "" if it does not.
func waitingReason(j *imagefarmv1.Job) string {
	if j.GetState().Final() {
		return ""
	}
	return j.GetWaitingReason()
}

// wanted is how many drives the job is to write: the named drives, or the
// standing order's count.
func wanted(j *imagefarmv1.Job) int {
	if so := j.GetTargets().GetStandingOrder(); so != nil {
		return int(so.GetCount())
	}
	if isDeviceJob(j) {
		return deviceCount(j)
	}
	return len(j.GetTargets().GetDrives().GetDriveIds())
}

func newJobCancelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job: its unfinished tasks are stopped and end CANCELED",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.CancelJob(cmd.Context(), &imagefarmv1.CancelJobRequest{JobId: args[0]})
			if err != nil {
				return err
			}
			if g.json {
				return printProto(cmd.OutOrStdout(), resp.GetJob())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s %s\n", resp.GetJob().GetId(), enumName(resp.GetJob().GetState()))
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the job as JSON")
	return cmd
}

// printSummary prints every task's result and how the job ended.
func printSummary(w io.Writer, job *imagefarmv1.Job) error {
	tw := newNotedTable(w)
	tw.rowf("NODE\tDRIVE\tSLOT\tSERIAL\tRESULT\tMB/s\tVERIFIED DIGEST / REASON")
	done := 0
	for _, t := range job.GetTasks() {
		rate, detail := "-", t.GetVerifiedDigest()
		if bps := t.GetBytesPerSecond(); bps > 0 {
			rate = fmt.Sprintf("%.1f", float64(bps)/1e6)
		}
		if f := t.GetFailure(); f != nil {
			detail = failureText(f)
		}
		if t.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE {
			done++
		}
		tw.rowf("%s\t%s\t%s\t%s\t%s\t%s\t%s", t.GetNodeId(), t.GetDrive().GetId(), dash(slotName(t.GetSlotLabel(), t.GetSlot())),
			dash(t.GetDrive().GetSerial()), enumName(t.GetState()), rate, dash(detail))
	}
	if err := tw.flush(); err != nil {
		return err
	}
	for _, t := range job.GetTasks() {
		printCapture(w, t)
	}
	_, err := fmt.Fprintf(w, "job %s %s: %d of %s verified\n", job.GetId(), enumName(job.GetState()), done, plural(wanted(job), "drive"))
	return err
}

// failureText is a task's failure as the summary shows it: reason, message
// and the offset when one applies.
func failureText(f *imagefarmv1.Failure) string {
	s := enumName(f.GetReason())
	if f.GetMessage() != "" {
		s += ": " + f.GetMessage()
	}
	if f.Offset != nil {
		s += fmt.Sprintf(" (at byte %d)", f.GetOffset())
	}
	return s
}
