package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/imager/drive"
)

// driveFlags say where a node's drives are and which it may write; drives
// and write share them.
type driveFlags struct {
	virtualDir string
	configPath string
	allow      []string
}

func addDriveFlags(cmd *cobra.Command, f *driveFlags) {
	fl := cmd.Flags()
	fl.StringVar(&f.virtualDir, "virtual-drives", "", "folder whose regular files are virtual drives (dev farm, tests)")
	fl.StringVar(&f.configPath, "config", "", `node config JSON: {"slots": {"SLOT": "LABEL"}, "allow": ["ID|SLOT|PATH"]}`)
	fl.StringArrayVar(&f.allow, "allow", nil, "admit a drive that is not removable or USB (a dock, a loop device) by id, slot or path (repeatable)")
}

// config is the drive.Config the flags describe: the node config file,
// with the flags on top.
func (f *driveFlags) config() (drive.Config, error) {
	var cfg drive.Config
	if f.configPath != "" {
		var err error
		if cfg, err = drive.LoadConfig(f.configPath); err != nil {
			return drive.Config{}, err
		}
	}
	if f.virtualDir != "" {
		cfg.VirtualDir = f.virtualDir
	}
	cfg.Allow = append(cfg.Allow, f.allow...)
	return cfg, nil
}

func newDrivesCmd(g *globals) *cobra.Command {
	var df driveFlags
	var local bool
	cmd := &cobra.Command{
		Use:   "drives",
		Short: "List the drives of the farm (with --controller) or of this node, their slots, and whether the guards let them be written",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.controller != "" && !local {
				return printFarmDrives(cmd, g)
			}
			cfg, err := df.config()
			if err != nil {
				return err
			}
			drives, err := drive.Discover(cfg)
			if err != nil {
				return err
			}
			rows := make([]driveJSON, len(drives))
			for i, d := range drives {
				vs := drive.Check(d, 0, cfg)
				rows[i] = driveJSON{Drive: d, Writable: drive.Refusal(vs) == nil, Verdicts: vs}
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			return printDrives(cmd.OutOrStdout(), rows)
		},
	}
	addDriveFlags(cmd, &df)
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON, with every guard's verdict")
	cmd.Flags().BoolVar(&local, "local", false, "list this machine's drives even when a controller is set")
	return cmd
}

// driveJSON is how drives are printed with --json.
type driveJSON struct {
	drive.Drive
	Writable bool            `json:"writable"`
	Verdicts []drive.Verdict `json:"verdicts"`
}

func printDrives(w io.Writer, rows []driveJSON) error {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no drives")
		return nil
	}
	t := newNotedTable(w)
	t.row("NAME", "ID", "PATH", "SIZE", "TRANSPORT", "REMOVABLE", "MODEL", "SERIAL", "SLOT", "LABEL", "WRITE")
	for _, r := range rows {
		d := r.Drive
		t.row(d.Name, d.ID, d.Path, bytesIEC(d.Size), string(d.Transport), yesNo(d.Removable), dash(d.Model), dash(d.Serial),
			dash(d.Slot), dash(d.SlotLabel), yesNo(r.Writable))
		if err := drive.Refusal(r.Verdicts); err != nil {
			t.note("%v", err)
		}
	}
	return t.flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
