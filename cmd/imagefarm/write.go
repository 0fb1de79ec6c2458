package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// writeFlags are the flags of imagefarm write.
type writeFlags struct {
	drives    []string
	discard   bool
	checkCap  bool
	parts     partitionFlags // partitions.go
	dryRun    bool
	cacheDir  string
	cacheSize string
	budget    time.Duration
	window    int
	df        driveFlags
	trust     trustFlags
}

func newWriteCmd(g *globals) *cobra.Command {
	var wf writeFlags
	cmd := &cobra.Command{
		Use:   "write REF --drive ID|PATH [--drive ID|PATH]...",
		Short: "Write an image to drives on this node at once, read every drive back and verify it",
		Long: `Write an image to one or more drives of this node, then read each back from the
device (bypassing the page cache) and check it against the image. Before a drive is
opened the guards refuse, with a reason and nothing written, a drive that holds the
system, the node cache or a mounted file system, is not removable or USB (unless
--allow or the node config admits it), is too small, read-only, changed identity
or is busy. With --check-capacity each drive's real capacity is probed first and a
counterfeit drive (one that holds less than it advertises) fails, not written.
The exit code is 0 only if every drive verified.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWrite(cmd, g, &wf, args[0])
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&wf.drives, "drive", nil, "drive to write, by id or device path (repeatable)")
	f.BoolVar(&wf.discard, "discard", false, "zero runs of zero chunks with BLKZEROOUT (or punch holes) and skip them instead of writing zeros")
	f.BoolVar(&wf.checkCap, "check-capacity", false, "first write and read back sentinels across each drive's advertised size, and refuse counterfeit drives (the probe overwrites them)")
	wf.parts.add(f)
	f.BoolVar(&wf.dryRun, "dry-run", false, "print the plan and what each guard said; write nothing")
	cache, _ := os.UserCacheDir()
	f.StringVar(&wf.cacheDir, "cache", filepath.Join(cache, "imagefarm", "node-cache"), "node cache folder (chunks downloaded once for all drives and jobs)")
	f.StringVar(&wf.cacheSize, "cache-size", "20GiB", "node cache size bound")
	durationVar(f, &wf.budget, "storage-retry-budget", catalog.DefaultRetryBudget, 1, retryBudgetUsage)
	positiveIntVar(f, &wf.window, "window", imager.DefaultWindow, "chunks a drive may fall behind the fastest before it streams on its own")
	f.BoolVar(&g.json, "json", false, "print the plan or the results as JSON")
	addDriveFlags(cmd, &wf.df)
	wf.trust.add(cmd)
	cmd.MarkFlagRequired("drive")
	return cmd
}

func runWrite(cmd *cobra.Command, g *globals, wf *writeFlags, refArg string) error {
	ctx := cmd.Context()
	sel, err := wf.parts.selection(wf.checkCap)
	if err != nil {
		return err
	}
	cat, m, digest, cfg, err := openForWrite(g, wf, refArg)
	if err != nil {
		return err
	}
	plan, err := imager.PlanDrives(wf.drives, m.Size, cfg)
	if err != nil {
		return fmt.Errorf("--%w", err)
	}
	if wf.dryRun {
		for i := range plan {
			checkOpen(&plan[i], cfg)
		}
		return printPlan(cmd.OutOrStdout(), g, refArg, digest, m, plan)
	}
	targets, closeAll := imager.Open(plan, cfg, slog.Default())
	defer closeAll()
	if len(targets) == 0 { // every drive refused: the node cache is not even opened
		return printResults(cmd.OutOrStdout(), g, plan, nil)
	}
	if cat, err = wf.cachedCatalog(cat, cfg.CacheDir); err != nil {
		return err
	}
	defer cat.Cache().Close()
	bars := newDriveBars(plan, targets, m.Size)
	w := imager.NewWriter(imager.WriterConfig{Catalog: cat, WriteWhileFetching: wf.trust.writeWhileFetching})
	results := w.Write(ctx, m, digest, targets, imager.WriteOptions{Discard: wf.discard, CheckCapacity: wf.checkCap, Partitions: sel, Window: wf.window, Progress: bars.update})
	bars.wait()
	return printResults(cmd.OutOrStdout(), g, plan, results)
}

func openForWrite(g *globals, wf *writeFlags, refArg string) (*catalog.Catalog, *catalog.Manifest, string, drive.Config, error) {
	fail := func(err error) (*catalog.Catalog, *catalog.Manifest, string, drive.Config, error) {
		return nil, nil, "", drive.Config{}, err
	}
	ref, err := catalog.ParseRef(refArg)
	if err != nil {
		return fail(err)
	}
	cfg, err := wf.df.config()
	if err != nil {
		return fail(err)
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = wf.cacheDir
	}
	if _, err := humanize.ParseBytes(wf.cacheSize); err != nil {
		return fail(fmt.Errorf("--cache-size %q: %w", wf.cacheSize, err))
	}
	cat, err := openCatalog(g, catalog.Options{RetryBudget: wf.budget})
	if err != nil {
		return fail(err)
	}
	m, digest, err := cat.Manifest(context.Background(), ref)
	if err != nil {
		return fail(err)
	}
	if err := m.ForDrive(); err != nil {
		return fail(err)
	}
	if err := verifyForWrite(cat, m, digest, wf.trust); err != nil {
		return fail(err)
	}
	return cat, m, digest, cfg, nil
}

// cachedCatalog reads cat's store through the node cache in dir, which is
// this process's until it is closed. write opens it only once it has a
// drive to write, so that a dry run, or a write whose drives are all
// refused, leaves the cache folder and the disk it is on as they were.
func (wf *writeFlags) cachedCatalog(cat *catalog.Catalog, dir string) (*catalog.Catalog, error) {
	size, err := humanize.ParseBytes(wf.cacheSize) // checked by openForWrite
	if err != nil {
		return nil, fmt.Errorf("--cache-size %q: %w", wf.cacheSize, err)
	}
	cache, err := catalog.OpenCache(dir, int64(size))
	if err != nil {
		return nil, err
	}
	c, err := catalog.New(cat.Store(), catalog.Options{Cache: cache, RetryBudget: wf.budget})
	if err != nil {
		cache.Close()
		return nil, err
	}
	return c, nil
}

func driveLabel(d drive.Drive) string {
	for _, s := range []string{d.SlotLabel, d.Slot} {
		if s != "" {
			return s
		}
	}
	return d.Name
}

// checkOpen adds to a dry run's plan the verdicts of the guards a write
// runs when it opens a drive: identity (the drive re-read is the one
// planned) and exclusive (it opens with O_EXCL, here read-only and closed
// at once, so nothing is written).
func checkOpen(p *imager.Plan, cfg drive.Config) {
	identity := drive.Verdict{Guard: drive.GuardIdentity, OK: true, Reason: "re-read: the drive planned"}
	exclusive := drive.Verdict{Guard: drive.GuardExclusive, OK: true, Reason: "opened exclusively (read-only, closed at once)"}
	now, err := drive.Reverify(p.Drive, cfg)
	if err != nil {
		identity.OK, identity.Reason = false, err.Error()
		exclusive.OK, exclusive.Reason = false, "not tried: the drive is not the one planned"
	} else if err := drive.CheckExclusive(now); err != nil {
		exclusive.OK, exclusive.Reason = false, err.Error()
	}
	p.Verdicts = append(p.Verdicts, identity, exclusive)
	if err := drive.Refusal(p.Verdicts); err != nil {
		p.Refused = err.Error()
	}
}

func printPlan(w io.Writer, g *globals, ref, digest string, m *catalog.Manifest, plan []imager.Plan) error {
	refused := slices.ContainsFunc(plan, func(p imager.Plan) bool { return p.Refused != "" })
	if g.json {
		if err := printJSON(w, map[string]any{"ref": ref, "digest": digest, "size": m.Size, "drives": plan}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "plan: write %s (%s, %s) to %s\n", ref, digest, bytesIEC(m.Size), plural(len(plan), "drive"))
		for _, p := range plan {
			d := p.Drive
			verdict := "WRITE"
			if p.Refused != "" {
				verdict = "REFUSE"
			}
			fmt.Fprintf(w, "\n%s %s  %s  %s %s  %s  serial %s  slot %s\n", verdict, d.ID, d.Path, d.Vendor, d.Model, bytesIEC(d.Size), dash(d.Serial), dash(driveLabel(d)))
			for _, v := range p.Verdicts {
				mark := "ok  "
				if !v.OK {
					mark = "FAIL"
				}
				fmt.Fprintf(w, "  %s %-10s %s\n", mark, v.Guard, v.Reason)
			}
		}
	}
	if refused {
		return exitError{"some drives would be refused"}
	}
	return nil
}

func printResults(w io.Writer, g *globals, plan []imager.Plan, results []imager.Result) error {
	byID := map[string]imager.Result{}
	for _, r := range results {
		byID[r.ID] = r
	}
	type row struct {
		Drive   drive.Drive    `json:"drive"`
		Result  *imager.Result `json:"result,omitempty"`
		Refused string         `json:"refused,omitempty"`
	}
	rows := make([]row, len(plan))
	ok := true
	for i, p := range plan {
		rows[i] = row{Drive: p.Drive, Refused: p.Refused}
		if r, found := byID[p.Drive.ID]; found && p.Refused == "" {
			rows[i].Result = &r
			ok = ok && r.Phase == imager.PhaseVerified
		} else {
			ok = false
		}
	}
	if g.json {
		if err := printJSON(w, rows); err != nil {
			return err
		}
	} else {
		tw := newNotedTable(w)
		tw.rowf("SLOT\tDRIVE\tSERIAL\tRESULT\tMB/s\tVERIFIED DIGEST / REASON")
		for _, r := range rows {
			result, rate, detail := "refused", "-", r.Refused
			if r.Result != nil {
				result, rate = string(r.Result.Phase), fmt.Sprintf("%.1f", r.Result.MBps)
				detail = r.Result.VerifiedDigest + r.Result.Error
				if r.Result.Phase == imager.PhaseCanceled {
					detail = "stopped before it was verified: the drive may hold part of the image; write it again"
				}
			}
			tw.rowf("%s\t%s\t%s\t%s\t%s\t%s", dash(driveLabel(r.Drive)), r.Drive.ID, dash(r.Drive.Serial), strings.ToUpper(result), rate, detail)
		}
		tw.flush()
	}
	if !ok {
		return exitError{"some drives were not verified"}
	}
	return nil
}

// verifyForWrite checks the image's signature when trusted keys are
// given; without them a local write, like its operator, trusts the store.
func verifyForWrite(cat *catalog.Catalog, m *catalog.Manifest, digest string, t trustFlags) error {
	keys, err := t.keyRing()
	if err != nil || keys == nil {
		return err
	}
	_, err = cat.Verify(context.Background(), m, digest, keys)
	return err
}
