package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/ident"
)

func newDevReinsertCmd(g *globals, f *devFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "reinsert (DRIVE... | --all)",
		Short: "Pull virtual drives of the dev farm and plug blank ones in their slots, as fresh drives for standing orders",
		Long: `Replace virtual drives of the dev farm in --data with blank ones of the same size,
as a technician pulls a written key and plugs a new one into the slot. A standing
order (job submit --count) takes only drives inserted fresh, never one written since
it was inserted; this gives it fresh ones. A running dev farm sees each new drive
within two seconds; a stopped one, when it starts. A drive is named by its id
(virt-drive1.img), NODE/ID, or file name (drive1.img). A drive being written is
refused, and nothing is replaced.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return errors.New("name the virtual drives to re-insert (imagefarm drives lists them), or give --all")
			}
			dir := filepath.Join(f.dataDir, "drives")
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return fmt.Errorf("no dev farm in %s (no drives folder): start one with imagefarm dev --data %s", f.dataDir, f.dataDir)
			}
			drives, err := pickVirtualDrives(dir, args)
			if err != nil {
				return err
			}
			for _, d := range drives {
				if err := reinsertVirtual(d); err != nil {
					return err
				}
			}
			return printReinserted(cmd.OutOrStdout(), g.json, drives)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "re-insert every virtual drive of the dev farm")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the re-inserted drives as JSON")
	return cmd
}

// pickVirtualDrives are the virtual drives of dir that names name, by id,
// NODE/ID or file name; every one of them when names is empty. A name
// that matches none is refused before anything is replaced.
func pickVirtualDrives(dir string, names []string) ([]drive.Drive, error) {
	drives, err := drive.Discover(drive.Config{VirtualDir: dir, VirtualOnly: true})
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return drives, nil
	}
	var out []drive.Drive
	for _, name := range names {
		i := slices.IndexFunc(drives, func(d drive.Drive) bool {
			return name == d.ID || name == devNode+"/"+d.ID || name == d.Name
		})
		if i < 0 {
			ids := make([]string, len(drives))
			for j, d := range drives {
				ids[j] = d.ID
			}
			has := "it has none"
			if len(ids) > 0 {
				has = "its drives: " + strings.Join(ids, ", ")
			}
			return nil, fmt.Errorf("the dev farm in %s has no virtual drive %s (%s)", filepath.Dir(dir), ident.Quote(name), has)
		}
		if !slices.ContainsFunc(out, func(d drive.Drive) bool { return d.ID == drives[i].ID }) {
			out = append(out, drives[i])
		}
	}
	return out, nil
}

// reinsertVirtual replaces d's file by a blank sparse file of the same
// size, made under a hidden name (no drive) and renamed over it, so the
// node sees the whole new drive at once, with a new serial (the inode).
// It holds the old file's lock meanwhile, the one a writer takes, so a
// drive being written is refused and one is not opened for writing while
// it is replaced.
func reinsertVirtual(d drive.Drive) error {
	old, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("re-insert %s: %w", d.ID, err)
	}
	defer old.Close()
	if err := unix.Flock(int(old.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("virtual drive %s is being written: wait for its task to end (imagefarm job ls), then re-insert it", d.ID)
	} else if err != nil {
		return fmt.Errorf("re-insert %s: lock: %w", d.ID, err)
	}
	tmp := filepath.Join(filepath.Dir(d.Path), "."+filepath.Base(d.Path)+".reinsert")
	// One left by an interrupted run goes first: opened as it is, a link
	// there would have another file truncated.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("re-insert %s: %w", d.ID, err)
	}
	blank, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("re-insert %s: %w", d.ID, err)
	}
	err = blank.Truncate(d.Size)
	if cerr := blank.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.Path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("re-insert %s: %w", d.ID, err)
	}
	return nil
}

// reinsertedJSON is one re-inserted drive as --json prints it.
type reinsertedJSON struct {
	ID   string `json:"id"`
	Path string `json:"path"`
	Size int64  `json:"size"`
}

func printReinserted(w io.Writer, asJSON bool, drives []drive.Drive) error {
	rows := make([]reinsertedJSON, len(drives))
	for i, d := range drives {
		rows[i] = reinsertedJSON{ID: devNode + "/" + d.ID, Path: d.Path, Size: d.Size}
	}
	if asJSON {
		return printJSON(w, rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "the dev farm has no virtual drive to re-insert")
		return err
	}
	for _, r := range rows {
		fmt.Fprintf(w, "re-inserted %s: a blank %s drive\n", r.ID, bytesIEC(r.Size))
	}
	_, err := fmt.Fprintln(w, "a running dev farm sees them within 2s; standing orders take them as freshly inserted drives")
	return err
}
