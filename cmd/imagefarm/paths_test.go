package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/internal/natsauth"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// runWithin runs imagefarm in-process like run, failing the test if the
// command has not returned within d: a path that would block it (a FIFO
// nobody writes to) must be refused, not waited on, and a command that
// waits on one never returns, so d asserts no speed (refusals come in
// milliseconds) and is long enough for a loaded machine. unblock, if set,
// frees a command that hung, so that the test can end.
func runWithin(t *testing.T, d time.Duration, unblock func(), args ...string) (string, error) {
	t.Helper()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := run(t, args...)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(d):
		if unblock != nil {
			unblock()
		}
		t.Fatalf("imagefarm %s still runs after %v: blocked on a path it should have refused", strings.Join(args, " "), d)
		return "", nil
	}
}

// unblockFIFOs opens every FIFO in paths for writing and closes it, which
// ends an open for reading waiting on it.
func unblockFIFOs(paths ...string) func() {
	return func() {
		for _, p := range paths {
			if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				unix.Close(fd)
			}
		}
	}
}

func mkfifo(t *testing.T, path string) string {
	t.Helper()
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInputPathsRefused gives every command that reads a file a person
// names a FIFO, a socket, a character device or a folder instead: each is
// refused at once, naming the path and what it is.
func TestInputPathsRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := mkfifo(t, filepath.Join(dir, "fifo"))
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	caDir := t.TempDir()
	mustRun(t, "ca", "init", "--dir", caDir)
	brokenCA := t.TempDir()
	os.Symlink(filepath.Join(caDir, "ca.crt"), filepath.Join(brokenCA, "ca.crt"))
	mkfifo(t, filepath.Join(brokenCA, "ca.key"))
	store := "file://" + t.TempDir()
	img := writeDiskImage(t, 1<<20, 12)
	mustRun(t, "--store", store, "image", "push", "disk:1", img)
	port, _ := testenv.FreePort()
	s3 := fmt.Sprintf("s3://bkt/p?endpoint=127.0.0.1:%d&insecure=true&retries=1&credentials=", port)
	const fifoIs, sockIs, charIs, dirIs = "is a named pipe (FIFO): give a regular file", "is a socket: give a regular file",
		"is a character device: give a regular file", "is a folder: give a regular file"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", store, "image", "push", "x:1", fifo}, fifo + " " + fifoIs},
		{[]string{"--store", store, "image", "push", "x:1", sock}, sock + " " + sockIs},
		{[]string{"--store", store, "image", "push", "x:1", "/dev/null"}, "/dev/null " + charIs},
		{[]string{"--store", store, "image", "push", "x:1", img, "--sign-key", fifo}, fifo + " " + fifoIs},
		{[]string{"--store", store, "image", "sign", "disk:1", "--sign-key", dir}, dir + " " + dirIs},
		{[]string{"--store", store, "write", "disk:1", "--drive", "d", "--dry-run", "--trusted-keys", fifo}, fifo + " " + fifoIs},
		{[]string{"drives", "--local", "--config", fifo}, fifo + " " + fifoIs},
		{[]string{"netboot", "build-env", "--out", filepath.Join(dir, "env"), "--kernel", fifo}, fifo + " " + fifoIs},
		{[]string{"netboot", "build-env", "--out", filepath.Join(dir, "env"), "--kernel", "/dev/null"}, "/dev/null " + charIs},
		{[]string{"netboot", "build-env", "--out", filepath.Join(dir, "env"), "--init", fifo}, fifo + " " + fifoIs},
		{[]string{"netboot", "build-env", "--out", filepath.Join(dir, "env"), "--init", dir}, dir + " " + dirIs},
		{[]string{"--store", s3 + fifo, "image", "ls"}, fifo + " " + fifoIs},
		{[]string{"--controller", "127.0.0.1:1", "--ca", fifo, "audit"}, fifo + " " + fifoIs},
		{[]string{"--controller", "127.0.0.1:1", "--ca", filepath.Join(caDir, "ca.crt"), "--tls-cert", fifo, "--tls-key", fifo, "audit"}, fifo + " " + fifoIs},
		{[]string{"ca", "issue", "--dir", brokenCA, "--node", "n1", "--out", t.TempDir()}, filepath.Join(brokenCA, "ca.key") + " " + fifoIs},
		{[]string{"--store", store, "--insecure", "controller", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", port), "--nats-creds", fifo}, fifo + " " + fifoIs},
		{[]string{"--store", "file:///dev/null", "image", "ls"}, "/dev/null is a character device: give a folder"},
	} {
		out, err := runWithin(t, 30*time.Second, unblockFIFOs(fifo, filepath.Join(brokenCA, "ca.key")), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}

// node is a device node, FIFO or socket an output path must leave alone.
type node struct {
	path string
	mode fs.FileMode
	rdev uint64
}

func statNode(t *testing.T, path string) node {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return node{path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Rdev}
}

// specialNodes makes, in dir, a copy of /dev/null's node, a block device
// node (a drive's), a FIFO, a socket and symbolic links to the first two.
func specialNodes(t *testing.T, dir string) (null, drive, fifo, sock, nullLink, driveLink string) {
	t.Helper()
	testenv.RequireRoot(t)
	null, drive = filepath.Join(dir, "null"), filepath.Join(dir, "sdz")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	// Major 60 is for local use: no driver, so nothing is written even by a
	// command that wrongly opens it.
	if err := unix.Mknod(drive, unix.S_IFBLK|0o600, int(unix.Mkdev(60, 0))); err != nil {
		t.Fatal(err)
	}
	fifo = mkfifo(t, filepath.Join(dir, "fifo"))
	sock = filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	nullLink, driveLink = filepath.Join(dir, "null-link"), filepath.Join(dir, "drive-link")
	os.Symlink(null, nullLink)
	os.Symlink(drive, driveLink)
	return
}

// TestOutputPathsRefused gives every command that writes a path a person
// names a device node (a copy of /dev/null's, a drive's), a FIFO, a socket
// or a link to a device: each is refused, saying what the path is and
// what to give instead, and the node is left as it was.
func TestOutputPathsRefused(t *testing.T) {
	dir := t.TempDir()
	null, drive, fifo, sock, nullLink, driveLink := specialNodes(t, dir)
	var nodes []node
	for _, p := range []string{null, drive, fifo, sock, nullLink, driveLink} {
		nodes = append(nodes, statNode(t, p))
	}
	store := "file://" + t.TempDir()
	mustRun(t, "--store", store, "image", "push", "disk:1", writeDiskImage(t, 1<<20, 13))
	keys, natsDir, pkiOut, caDir := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	os.Symlink(null, filepath.Join(keys, "signing.key"))
	os.Symlink(drive, filepath.Join(natsDir, natsauth.ServerConfigFile))
	mustRun(t, "ca", "init", "--dir", caDir)
	os.Symlink(drive, filepath.Join(pkiOut, "node-n1.key"))
	const stdout = ", or - to stream the image to stdout"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "pull", "disk:1", null}, null + " is a character device: give a new path or an existing regular file" + stdout},
		{[]string{"image", "pull", "disk:1", null, "--force"}, null + " is a character device"},
		{[]string{"image", "pull", "disk:1", drive, "--force"}, drive + " is a block device (a drive): use imagefarm write to write drives"},
		{[]string{"image", "pull", "disk:1", fifo}, fifo + " is a named pipe (FIFO)"},
		{[]string{"image", "pull", "disk:1", sock}, sock + " is a socket"},
		{[]string{"image", "pull", "disk:1", nullLink, "--force"}, nullLink + " is a symbolic link to " + null + ", which is a character device"},
		{[]string{"image", "pull", "disk:1", driveLink, "--force"}, "which is a block device (a drive): use imagefarm write"},
		{[]string{"media", "build", "--winpe", "winpe:1", "--wim", "win11:1", "--out", null, "--force"}, null + " is a character device"},
		{[]string{"media", "build", "--winpe", "winpe:1", "--wim", "win11:1", "--out", driveLink}, "which is a block device (a drive): use imagefarm write"},
		{[]string{"key", "init", "--out", fifo}, fifo + " is a named pipe (FIFO): give a folder"},
		{[]string{"key", "init", "--out", keys}, filepath.Join(keys, "signing.key") + " already exists"},
		{[]string{"ca", "init", "--dir", null}, null + " is a character device: give a folder"},
		{[]string{"ca", "issue", "--dir", caDir, "--node", "n1", "--out", pkiOut}, filepath.Join(pkiOut, "node-n1.key") + " is a symbolic link to " + drive},
		{[]string{"nats-config", "--dir", natsDir, "--node", "n1"}, natsauth.ServerConfigFile + " is a symbolic link to " + drive},
		{[]string{"--insecure", "controller", "--nats", "nats://127.0.0.1:1", "--bootstrap-token-file", null}, null + " is a character device"},
	} {
		out, err := runWithin(t, 30*time.Second, unblockFIFOs(fifo), append([]string{"--store", store}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagefarm %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	for _, n := range nodes {
		if now := statNode(t, n.path); now != n {
			t.Errorf("%s is now %v (device %x), was %v (device %x)", n.path, now.mode, now.rdev, n.mode, n.rdev)
		}
	}
	for _, d := range []string{dir, keys, natsDir, pkiOut} {
		for _, name := range names(t, d) {
			if strings.HasPrefix(name, ".") {
				t.Errorf("a refused write left %s in %s", name, d)
			}
		}
	}
}

// TestPullTarget covers what image pull does with the path it is given:
// a new file, an existing one (only with --force), a missing folder, --json.
func TestPullTarget(t *testing.T) {
	store := "file://" + t.TempDir()
	img := writeDiskImage(t, 3<<20, 14)
	mustRun(t, "--store", store, "image", "push", "disk:1", img)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.img")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	out, err := run(t, "--store", store, "image", "pull", "disk:1", existing)
	if want := existing + " already exists: pass --force to replace it, or give a new path"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("pull over an existing file = %v (%s), want %q", err, out, want)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Errorf("a refused pull changed the file to %d bytes", len(b))
	}
	var res struct {
		Ref, Digest, Path string
		Size              int64
	}
	text := mustRun(t, "--store", store, "image", "pull", "disk:1", existing, "--force", "--json")
	if err := json.Unmarshal([]byte(text), &res); err != nil || res.Ref != "disk:1" || res.Path != existing || res.Size != 3<<20 || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Errorf("pull --json = %s (%v), want the ref, digest, size and path", text, err)
	}
	if got, want := sha256File(t, existing), sha256File(t, img); got != want {
		t.Errorf("pull --force left sha256 %s, want the image's %s", got, want)
	}
	missing := filepath.Join(dir, "nodir")
	_, err = run(t, "--store", store, "image", "pull", "disk:1", filepath.Join(missing, "out.img"))
	if want := "folder " + missing + " does not exist: make it first"; err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), ".tmp") {
		t.Errorf("pull into a missing folder = %v, want %q and no temporary file named", err, want)
	}
	if _, err := run(t, "--store", store, "image", "pull", "disk:1", "-", "--json"); err == nil || !strings.Contains(err.Error(), "stdout holds the image") {
		t.Errorf("pull - --json = %v, want it refused", err)
	}
	for _, name := range names(t, dir) {
		if name != "existing.img" {
			t.Errorf("pulls left %s in %s", name, dir)
		}
	}
}

// treeState is what a folder tree holds: every path's type, mode, size,
// time and content hash.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			sum = hex.EncodeToString(h[:])
		}
		state[p] = fmt.Sprintf("%v %d %d %s", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// TestReadOnlyCommandsCreateNothing runs every command that only reads
// against a file store (one made by a push, and a folder that is none), a
// node's drives and config, and a controller, and checks that the folder
// trees they read, and the user's cache folder, are as they were.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	base := t.TempDir()
	storeDir, missing, home := filepath.Join(base, "store"), filepath.Join(base, "missing"), filepath.Join(base, "home")
	drives, cfg := filepath.Join(base, "drives"), filepath.Join(base, "node.json")
	for _, d := range []string{home, drives} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(drives, "d1.img"), make([]byte, 4<<20), 0o644)
	os.WriteFile(cfg, []byte(`{"slots": {"virt-d1.img": "bench 1"}}`), 0o644)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	t.Setenv("HOME", home)
	store := "file://" + storeDir
	mustRun(t, "--store", store, "image", "push", "disk:1", writeDiskImage(t, 2<<20, 15), "--channel", "stable")
	os.RemoveAll(filepath.Join(storeDir, ".tmp")) // as a store copied from elsewhere has none
	farm := serveFakeAPI(t, &fakeTrail{records: testTrail(t)})
	before := treeState(t, base)
	for _, args := range [][]string{
		{"--store", store, "image", "ls"},
		{"--store", store, "image", "ls", "--json"},
		{"--store", store, "image", "inspect", "disk:stable"},
		{"--store", store, "image", "pull", "disk:1", "-"},
		{"--store", store, "image", "pull", "disk:1", filepath.Join(t.TempDir(), "copy.img")},
		{"--store", store, "write", "disk:1", "--drive", "virt-d1.img", "--virtual-drives", drives, "--config", cfg, "--dry-run"},
		{"--store", "file://" + missing, "image", "ls"},
		{"--store", "file://" + missing, "image", "inspect", "disk:1"},
		{"drives", "--local", "--virtual-drives", drives, "--config", cfg},
		{"--controller", farm, "--insecure", "audit"},
	} {
		out, err := run(t, args...)
		t.Logf("imagefarm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if _, err := runFarm(t, serveFakeAPI(t, &fakeAPI{pages: [][]*imagefarmv1.Job{{testJob(imagefarmv1.JobState_JOB_STATE_SUCCEEDED, 3)}}}), "job", "ls"); err != nil {
		t.Errorf("job ls: %v", err)
	}
	after := treeState(t, base)
	for p, was := range before {
		if now, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		} else if now != was {
			t.Errorf("%s changed: %s, was %s", p, now, was)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("a read-only command created %s", p)
		}
	}
}
