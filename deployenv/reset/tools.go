package reset

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// tool runs a Debian tool and returns its standard output; a failure
// carries the command and its standard error.
func tool(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, ok := err.(*exec.Error); ok {
			return nil, fmt.Errorf("%s: %w (the deploy environment and test hosts need wimtools, ntfs-3g and libhivex-bin)", name, err)
		}
		return stdout.Bytes(), &toolError{cmd: name + " " + strings.Join(args, " "), stderr: lastLines(stderr.String(), 6), err: err}
	}
	return stdout.Bytes(), nil
}

// toolError is a tool that failed.
type toolError struct {
	cmd, stderr string
	err         error
}

func (e *toolError) Error() string { return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr) }
func (e *toolError) Unwrap() error { return e.err }

// lastLines is the last n non-empty lines of s, joined with "; ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		// wimlib redraws its progress line with carriage returns.
		if i := strings.LastIndexByte(l, '\r'); i >= 0 {
			l = l[i+1:]
		}
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
