// Command schedule is the scheduling benchmark of issue 4: a controller
// process on a real NATS server with JetStream, driven by simulated imagers
// that speak the real protocols (a gRPC status stream each, a dispatch
// subscriber each) and write nothing, and a client that submits standing
// orders through the real API. It reports submit-to-assign latency, tasks
// per second through the whole lifecycle, and the controller's CPU time and
// peak memory.
//
//	go run ./tests/bench/schedule -imagefarm BIN [-nats-bin nats-server] [-nodes 200 -drives 16 -tasks 10000]
//
// tests/bench/schedule.sh builds the binaries and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Config is one benchmark run.
type Config struct {
	Imagefarm string // the imagefarm binary: controller and image push
	NATSBin   string // a nats-server binary; "" runs NATS in this process
	Dir       string // work folder: store, NATS data, logs
	Nodes     int
	Drives    int // per node
	Tasks     int // in total
	JobCount  int // tasks per standing order
	// Window is the most tasks submitted and not yet done; 0 for one per
	// drive of the farm.
	Window    int
	WriteTime time.Duration // fake write time per task
	SwapTime  time.Duration // from a task's end to its key being swapped
	ImageSize int64
	TTL       time.Duration // the controller's heartbeat TTL
	Progress  time.Duration // how often to print progress; 0 never
	Timeout   time.Duration // for all tasks to finish once submitting starts
}

func main() {
	var cfg Config
	flag.StringVar(&cfg.Imagefarm, "imagefarm", "", "imagefarm binary (go build -o BIN ./cmd/imagefarm)")
	flag.StringVar(&cfg.NATSBin, "nats-bin", "", "nats-server binary to run NATS as its own process; empty: embedded in this process")
	flag.StringVar(&cfg.Dir, "dir", "", "work folder (default: a new temporary one)")
	flag.IntVar(&cfg.Nodes, "nodes", 200, "simulated imager nodes")
	flag.IntVar(&cfg.Drives, "drives", 16, "drives per node")
	flag.IntVar(&cfg.Tasks, "tasks", 10000, "tasks in total")
	flag.IntVar(&cfg.JobCount, "job-count", 0, "tasks per standing order (0: 100, or a quarter of the window if that is less)")
	flag.IntVar(&cfg.Window, "window", 0, "most tasks submitted and not yet done (0: nodes × drives)")
	flag.DurationVar(&cfg.WriteTime, "write-time", 0, "fake write time per task")
	flag.DurationVar(&cfg.SwapTime, "swap-time", 0, "time from a task's end to its USB key being swapped")
	flag.Int64Var(&cfg.ImageSize, "image-size", 4<<20, "bytes of the pushed image")
	flag.DurationVar(&cfg.TTL, "heartbeat-ttl", 60*time.Second, "the controller's --heartbeat-ttl")
	flag.DurationVar(&cfg.Progress, "progress", 5*time.Second, "progress line interval on stderr (0: none)")
	flag.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "give up (and report what was measured) when the tasks are not all done by then")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "schedule:", err)
		if errors.Is(err, errChecks) {
			os.Exit(3) // the figures were printed
		}
		os.Exit(1)
	}
}

func (c *Config) check() error {
	if c.Imagefarm == "" {
		return fmt.Errorf("-imagefarm: name the imagefarm binary")
	}
	if c.Nodes < 1 || c.Drives < 1 || c.Tasks < 1 || c.JobCount < 0 || c.Window < 0 {
		return fmt.Errorf("-nodes, -drives and -tasks must be at least 1, -job-count and -window at least 0")
	}
	if c.Window == 0 {
		c.Window = c.Nodes * c.Drives
	}
	if c.JobCount == 0 {
		c.JobCount = min(100, max(1, c.Window/4))
	}
	if c.Window < c.JobCount {
		return fmt.Errorf("-window %d is below -job-count %d: no job could ever be submitted", c.Window, c.JobCount)
	}
	return nil
}
