package reset

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// errNoPath is a path that is not on a volume.
var errNoPath = errors.New("no such path")

// ntfsList lists a folder of an unmounted NTFS volume (ntfsls).
func ntfsList(ctx context.Context, dev, dir string) ([]string, error) {
	out, err := tool(ctx, nil, "ntfsls", "-a", "-p", "/"+dir, dev)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range strings.Split(string(out), "\n") {
		if n != "" && n != "." && n != ".." {
			names = append(names, n)
		}
	}
	return names, nil
}

// ntfsFind resolves a volume-relative path whose letters may differ in case
// from what is on the volume (ntfs-3g's tools match case exactly, Windows
// does not), returning the path as the volume spells it.
func ntfsFind(ctx context.Context, dev, p string) (string, error) {
	found := ""
	for _, part := range strings.Split(p, "/") {
		names, err := ntfsList(ctx, dev, found)
		if err != nil {
			return "", err
		}
		next := ""
		for _, n := range names {
			if strings.EqualFold(n, part) {
				next = n
				break
			}
		}
		if next == "" {
			return "", fmt.Errorf("%s: %w", p, errNoPath)
		}
		found = path.Join(found, next)
	}
	return found, nil
}

// ntfsRead reads up to limit bytes of a file of an unmounted NTFS volume
// (ntfscat), all of it when limit < 0.
func ntfsRead(ctx context.Context, dev, p string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ntfscat", dev, "/"+p)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ntfscat: %w", err)
	}
	r := io.Reader(out)
	if limit >= 0 {
		r = io.LimitReader(out, limit)
	}
	b, rerr := io.ReadAll(r)
	if limit >= 0 {
		cancel() // enough read: ntfscat may still be writing
	}
	werr := cmd.Wait()
	if rerr != nil {
		return nil, rerr
	}
	if werr != nil && (limit < 0 || int64(len(b)) < limit) {
		return nil, &toolError{cmd: "ntfscat " + dev + " /" + p, stderr: lastLines(stderr.String(), 4), err: werr}
	}
	return b, nil
}

// ntfsLabel reads a volume's label.
func ntfsLabel(ctx context.Context, dev string) (string, error) {
	out, err := tool(ctx, nil, "ntfslabel", dev)
	return strings.TrimRight(string(out), "\n"), err
}

// mount is an ntfs-3g mount that this process runs in the foreground, so
// that unmounting it waits until ntfs-3g has written everything and closed
// the device.
type mount struct {
	dir    string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error
}

// mountNTFS mounts dev (read-only unless write) on a new folder in scratch.
func mountNTFS(ctx context.Context, dev, scratch string, write bool) (*mount, error) {
	dir, err := os.MkdirTemp(scratch, "reset-mnt-")
	if err != nil {
		return nil, err
	}
	opts := "no_detach,streams_interface=xattr"
	if !write {
		opts += ",ro"
	}
	m := &mount{dir: dir, done: make(chan error, 1)}
	// Not CommandContext: the mount must be unmounted, not killed.
	m.cmd = exec.Command("ntfs-3g", "-o", opts, dev, dir)
	m.cmd.Stdout, m.cmd.Stderr = io.Discard, &m.stderr
	if err := m.cmd.Start(); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("ntfs-3g: %w", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	if err := m.waitMounted(ctx); err != nil {
		os.Remove(dir)
		return nil, err
	}
	return m, nil
}

// waitMounted waits until the mount shows in mountinfo or ntfs-3g exits.
func (m *mount) waitMounted(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if mounted(m.dir) {
			return nil
		}
		select {
		case err := <-m.done:
			return &toolError{cmd: "ntfs-3g " + strings.Join(m.cmd.Args[1:], " "), stderr: lastLines(m.stderr.String(), 4), err: err}
		case <-ctx.Done():
			m.cmd.Process.Kill()
			<-m.done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// mounted reports whether dir is a mount point.
func mounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// unmount unmounts and waits for ntfs-3g to exit.
func (m *mount) unmount() error {
	uerr := unix.Unmount(m.dir, 0)
	for try := 0; uerr == unix.EBUSY && try < 100; try++ { // a file of ours still closing
		time.Sleep(50 * time.Millisecond)
		uerr = unix.Unmount(m.dir, 0)
	}
	if uerr != nil {
		return fmt.Errorf("unmount %s: %w", m.dir, uerr)
	}
	err := <-m.done
	os.Remove(m.dir)
	if err != nil {
		return &toolError{cmd: "ntfs-3g", stderr: lastLines(m.stderr.String(), 4), err: err}
	}
	return nil
}
