package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/audit"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func newAuditCmd(g *globals) *cobra.Command {
	var (
		since string
		limit uint32
	)
	cmd := &cobra.Command{
		Use:   "audit [--since 24h|7d|RFC3339|all] [--limit N] [--json]",
		Short: "Show the audit trail: jobs submitted and canceled, images pushed and removed, drives written or refused, nodes fenced",
		Long: `Show the farm's audit trail, oldest first: who submitted or canceled a job, pushed,
tagged, signed or removed an image, which drive (node, slot, serial) was written
with which image and how it ended, which drives were refused before a byte was
written (a guard, or the image's signature, rollback or chunk check), which nodes
were fenced. A catalog ref that appeared, moved or was removed without being
reported (changed with the S3 keys directly, or without --controller) shows as
image.unrecorded by controller within two of the controller's catalog scans
(--catalog-scan-interval, 1m). The trail is append-only and hash-chained;
imagefarm audit verify checks it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			req := &imagefarmv1.ListAuditRequest{}
			if !from.IsZero() {
				req.Since = timestamppb.New(from)
			}
			w := cmd.OutOrStdout()
			read := func(fn func(*imagefarmv1.AuditRecord) error) error {
				return readNewest(cmd.Context(), c, req, int(limit), fn)
			}
			if g.json {
				return read(func(r *imagefarmv1.AuditRecord) error { return printProtoLine(w, r) })
			}
			tw := newNotedTable(w)
			tw.rowf("SEQ\tTIME\tACTION\tACTOR\tSUBJECT\tDETAIL")
			err = read(func(r *imagefarmv1.AuditRecord) error {
				tw.rowf("%d\t%s\t%s\t%s\t%s\t%s", r.GetSequence(), r.GetTime().AsTime().Local().Format(time.DateTime),
					actionName(r.GetAction()), r.GetActor(), dash(auditSubject(r)), dash(auditDetail(r)))
				return nil
			})
			if ferr := tw.flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "24h", "only records from this long ago (90m, 24h, 7d), from this time (RFC 3339), or all")
	f.Uint32Var(&limit, "limit", 0, "only the newest this many records of those --since takes, still oldest first (0: all)")
	f.BoolVar(&g.json, "json", false, "print the records as JSON lines")
	cmd.AddCommand(newAuditVerifyCmd(g))
	return cmd
}

// readNewest calls fn with the newest limit records ListAudit streams for
// req (all of them when limit is 0), oldest first. ListAudit's own limit
// keeps the oldest: the newest are known only at the stream's end.
func readNewest(ctx context.Context, c *controllerClient, req *imagefarmv1.ListAuditRequest, limit int, fn func(*imagefarmv1.AuditRecord) error) error {
	if limit == 0 {
		return readAudit(ctx, c, req, fn)
	}
	var last []*imagefarmv1.AuditRecord
	err := readAudit(ctx, c, req, func(r *imagefarmv1.AuditRecord) error {
		if last = append(last, r); len(last) > limit {
			last = last[1:]
		}
		return nil
	})
	for _, r := range last {
		if err == nil {
			err = fn(r)
		}
	}
	return err
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the whole audit trail's hash chain; the exit code is 1 if a record was edited, removed or inserted",
		Long: `Read every record of the audit trail and check its hash chain: each record's hash
against its content, its prev_hash against the record before, and that no sequence
is missing. Prints the count and the last hash (keep it elsewhere: a later verify
that does not reach it shows the trail was cut), or the first broken record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			var chain audit.Chain
			err = readAudit(cmd.Context(), c, &imagefarmv1.ListAuditRequest{}, chain.Add)
			var broken *audit.BrokenError
			if err != nil && !errors.As(err, &broken) {
				return err
			}
			if g.json {
				return printVerifiedJSON(cmd.OutOrStdout(), &chain, broken)
			}
			if broken != nil {
				return fmt.Errorf("audit trail broken: %w (the %s before it verify)", err, plural(chain.Count(), "record"))
			}
			return printVerified(cmd.OutOrStdout(), &chain)
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON (the exit code is still 1 for a broken trail)")
	return cmd
}

// verifiedJSON is audit verify's result as --json prints it.
type verifiedJSON struct {
	OK bool `json:"ok"`
	// Verified counts the records that verify, First to Last; LastHash
	// is the last one's.
	Verified int    `json:"verified"`
	First    uint64 `json:"first,omitempty"`
	Last     uint64 `json:"last,omitempty"`
	LastHash string `json:"last_hash,omitempty"`
	// BrokenAt is the first record that does not, and Reason why.
	BrokenAt uint64 `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// printVerifiedJSON prints the chain's result, broken at broken unless
// nil; a broken trail is then an exitError.
func printVerifiedJSON(w io.Writer, chain *audit.Chain, broken *audit.BrokenError) error {
	v := verifiedJSON{OK: broken == nil, Verified: chain.Count()}
	if chain.Count() > 0 {
		v.First = chain.First()
		v.Last, v.LastHash = chain.Last()
	}
	if broken != nil {
		v.BrokenAt, v.Reason = broken.Sequence, broken.Reason
	}
	if err := printJSON(w, v); err != nil {
		return err
	}
	if broken != nil {
		return exitError{"audit trail broken"}
	}
	return nil
}

func printVerified(w io.Writer, chain *audit.Chain) error {
	if chain.Count() == 0 {
		_, err := fmt.Fprintln(w, "OK: the audit trail is empty")
		return err
	}
	last, hash := chain.Last()
	expired := ""
	if chain.First() > 1 {
		expired = fmt.Sprintf("; records before %d expired", chain.First())
	}
	_, err := fmt.Fprintf(w, "OK: %s verified, %d to %d%s\nlast hash %s\n", plural(chain.Count(), "record"), chain.First(), last, expired, hash)
	return err
}

// readAudit calls fn with each record ListAudit streams for req.
func readAudit(ctx context.Context, c *controllerClient, req *imagefarmv1.ListAuditRequest, fn func(*imagefarmv1.AuditRecord) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.ListAudit(ctx, req)
	if err != nil {
		return c.wrap(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.wrap(err)
		}
		if err := fn(resp.GetRecord()); err != nil {
			return err
		}
	}
}

// parseSince reads --since: a duration back from now, a time, or "all"
// (the zero time).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "all" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration back from now (90m, 24h, 7d), a time (2026-05-01T08:00:00Z) or all", s)
}

// actionName is how the CLI names an action: "job.submit", "drive.written".
func actionName(a imagefarmv1.AuditAction) string {
	return strings.Replace(strings.ToLower(enumName(a)), "_", ".", 1)
}

// auditSubject is what a record is about: its job, drive and image.
func auditSubject(r *imagefarmv1.AuditRecord) string {
	return joinSet(" ", r.GetJobId(), r.GetNodeId(), r.GetMac(), slotName(r.GetSlotLabel(), r.GetSlot()), r.GetDriveSerial(), r.GetImageRef())
}

// auditDetail is how it ended, and why.
func auditDetail(r *imagefarmv1.AuditRecord) string {
	var state, reason string
	if r.GetTaskState() != 0 {
		state = enumName(r.GetTaskState())
	}
	if r.GetFailureReason() != 0 {
		reason = enumName(r.GetFailureReason())
	}
	return joinSet(" ", state, reason, r.GetMessage())
}

// joinSet joins the non-empty strings of parts.
func joinSet(sep string, parts ...string) string {
	var set []string
	for _, p := range parts {
		if p != "" {
			set = append(set, p)
		}
	}
	return strings.Join(set, sep)
}
