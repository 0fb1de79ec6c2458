package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// stopGrace is how long a command has, after SIGINT or SIGTERM, to stop by
// itself before the process exits anyway: every command stops within a
// second of being told to, even one stuck in a system call that no
// context reaches (a write to a pipe nobody reads, a sync of a slow disk).
const stopGrace = 700 * time.Millisecond

// stopSignal is the cause of the command context's end when a signal
// stopped the command.
type stopSignal struct{ sig syscall.Signal }

func (s stopSignal) Error() string { return "stopped by " + s.name() }

func (s stopSignal) name() string {
	if s.sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

// exitCode is the shell's status for a process ended by the signal.
func (s stopSignal) exitCode() int { return 128 + int(s.sig) }

// signalContext returns the context commands run under: it ends, with a
// stopSignal cause, at the first SIGINT or SIGTERM. The command then has
// stopGrace to return; at a second signal, or if it has not, the process
// removes the temporary files of unfinished outputs and exits. stop ends
// the watch once the command has returned.
func signalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var s stopSignal
		select {
		case sig := <-sigs:
			s = stopSignal{sig.(syscall.Signal)}
		case <-done:
			return
		}
		cancel(s)
		select {
		case <-sigs:
		case <-time.After(stopGrace):
		case <-done:
			return
		}
		userpath.RemoveTemporaries()
		fmt.Fprintf(os.Stderr, "imagefarm: %s before the command finished\n", s)
		os.Exit(s.exitCode())
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
	}
}

// exitStatus says how cmd ended with err, on stderr, and returns the exit
// status: 0, 1, or for a command stopped by a signal 128 + its number
// (0 if it stopped cleanly). A command stopped by a signal is said to be
// so, not to have failed with "context canceled"; an exitError has said
// what it had to already.
func exitStatus(ctx context.Context, stderr io.Writer, cmd *cobra.Command, err error) int {
	var exit exitError
	var stopped stopSignal
	name := "imagefarm"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	switch {
	case !errors.As(context.Cause(ctx), &stopped):
		if err == nil {
			return 0
		}
		if !errors.As(err, &exit) {
			fmt.Fprintln(stderr, "imagefarm:", cliErrors.Message(err))
		}
		return 1
	case err == nil: // stopped cleanly, as a server does
		fmt.Fprintf(stderr, "%s: %s\n", name, stopped)
		return 0
	}
	fmt.Fprintf(stderr, "%s: %s before it finished\n", name, stopped)
	return stopped.exitCode()
}
