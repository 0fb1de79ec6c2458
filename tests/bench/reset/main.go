// Command reset is the reset benchmark's helper (tests/bench/reset.sh):
//
//	go run ./tests/bench/reset tree -size 4GiB -seed 1 OUT   # a Windows-shaped tree to capture
//	go run ./tests/bench/reset run -disk D -image W -state S  # one reset, its step times as JSON
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/imagefarm/imagefarm/deployenv/reset"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: reset tree|run ...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "tree":
		err = treeCmd(os.Args[2:])
	case "run":
		err = runCmd(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: tree or run", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reset:", err)
		os.Exit(1)
	}
}

// runCmd runs one reset and prints its step times and total in seconds.
func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	disk := fs.String("disk", "", "the whole disk (image file or device)")
	image := fs.String("image", "", "the WIM")
	state := fs.String("state", "", "an empty folder for the State")
	scratch := fs.String("scratch", "", "scratch folder")
	fs.Parse(args)
	p := reset.Plan{Disk: *disk, Image: *image, Index: 1, State: reset.DirState(*state), Scratch: *scratch}
	start := time.Now()
	rep, err := reset.Run(ctx, p, nil)
	if err != nil {
		return err
	}
	out := map[string]float64{"total": time.Since(start).Seconds(), "kept": float64(len(rep.Kept))}
	for s, d := range rep.Steps {
		out[string(s)] = time.Duration(d).Seconds()
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
