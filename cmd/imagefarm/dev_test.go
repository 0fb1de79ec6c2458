package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestDevRefusesFlagsThatMakeNoFarm: drives too small for the demo's
// sample, no drives or absurd sizes are refused by name, before the data
// folder is made.
func TestDevRefusesFlagsThatMakeNoFarm(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--demo", "--size", "32MiB", "--drive-size", "16777216"},
			"--drive-size 16777216 is smaller than the demo's sample image (--size 32MiB): give --drive-size 33554432 or more, or a smaller --size"},
		{[]string{"--drives", "0"}, "--drives 0: give 1 to 64 virtual drives"},
		{[]string{"--drives", "100000"}, "--drives 100000: give 1 to 64"},
		{[]string{"--drive-size", "1000"}, "--drive-size 1000: give at least 1 MiB"},
		{[]string{"--drive-size", "1048577"}, "a multiple of 512 bytes"},
		{[]string{"--drive-size", "-1"}, `--drive-size "-1": want a size in bytes, or such as 64MiB or 1GiB`},
		{[]string{"--drive-size", "1e9"}, `--drive-size "1e9": want a size`},
		{[]string{"--drive-size", "99EiB"}, `--drive-size "99EiB": want a size`},
		{[]string{"--demo", "--size", "0"}, "--size 0: the demo's sample image needs at least 1 MiB"},
		{[]string{"--netboot", "br0"}, "--netboot needs --netboot-env NAME:VERSION"},
		{[]string{"--netboot-env", "deploy:1"}, "start it with --netboot INTERFACE|ADDRESS"},
		{[]string{"--netboot", "br0", "--netboot-env", "deploy:1", "--netboot-env-check", "-1s"}, "--netboot-env-check"},
	} {
		data := filepath.Join(t.TempDir(), "dev")
		out, err := run(t, append([]string{"dev", "--data", data}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dev %v = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dev %v made its data folder (%v), want nothing made", tc.args, err)
		}
	}
}

// TestDevStopsCleanlyOnSignals runs the real binary: SIGTERM or SIGINT is
// how a dev farm is stopped, so it exits 0 saying where its data stays; a
// demo stopped half-way did not finish, and its exit status says so.
func TestDevStopsCleanlyOnSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel() // each dev farm has its own folder and a free port
			data := t.TempDir()
			p := startCLI(t, "dev", "--data", data, "--drives", "1", "--drive-size", "1048576")
			p.waitFor(t, "from another terminal")
			_, code := p.signal(t, sig)
			if out := p.out.String(); code != 0 || !strings.Contains(out, "dev farm stopped; its data stays in "+data) || strings.Contains(out, "context canceled") {
				t.Errorf("dev after %v exited %d, saying:\n%s\nwant exit 0 and a clean stop", sig, code, out)
			}
		})
	}
	t.Run("demo", func(t *testing.T) {
		t.Parallel()
		p := startCLI(t, "dev", "--demo", "--data", t.TempDir(), "--size", "1048576", "--drive-size", "1048576")
		p.waitFor(t, "$ imagefarm image push")
		_, code := p.signal(t, syscall.SIGTERM)
		if out := p.out.String(); code != 128+int(syscall.SIGTERM) || strings.Contains(out, "context canceled") {
			t.Errorf("demo after SIGTERM exited %d, saying:\n%s\nwant %d, not finished", code, out, 128+int(syscall.SIGTERM))
		}
	})
}

// devFarm is a dev farm running in-process, and the flags that reach it.
type devFarm struct {
	data string
	args []string // --controller, TLS, token and store flags
}

// startDev runs imagefarm dev with n drives of size bytes until the test
// ends.
func startDev(t *testing.T, n int, size int64) *devFarm {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	d := &devFarm{data: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"dev", "--data", d.data, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--drives", fmt.Sprint(n),
			"--drive-size", fmt.Sprint(size), "--log-level", "warn"})
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev = %v, want nil when stopped", err)
		}
	})
	pki := filepath.Join(d.data, "pki")
	testenv.Eventually(t, time.Minute, "the dev farm reporting its drives", func() bool {
		token, err := os.ReadFile(filepath.Join(pki, "admin.token"))
		if err != nil || len(token) == 0 {
			return false
		}
		d.args = []string{"--controller", fmt.Sprintf("127.0.0.1:%d", port), "--ca", filepath.Join(pki, "ca.crt"),
			"--tls-cert", filepath.Join(pki, "client-dev.crt"), "--tls-key", filepath.Join(pki, "client-dev.key"),
			"--token", strings.TrimSpace(string(token)), "--store", "file://" + filepath.Join(d.data, "store")}
		out, err := run(t, d.cli("drives", "--json")...)
		return err == nil && strings.Count(out, `"TRANSPORT_VIRTUAL"`) == n
	})
	return d
}

// cli is args with the flags that reach the farm.
func (d *devFarm) cli(args ...string) []string { return append(args, d.args...) }

// TestDevReinsertFeedsAStandingOrder writes every virtual drive of a dev
// farm with a first standing order; a second one then waits, saying the
// drives were written and how to re-insert them; dev reinsert makes one
// fresh, and the second order takes it. The farm lists only its virtual
// drives, never the host's disks.
func TestDevReinsertFeedsAStandingOrder(t *testing.T) {
	d := startDev(t, 2, 8<<20)
	var drives []map[string]any
	out := mustRun(t, d.cli("drives", "--json")...)
	if err := json.Unmarshal([]byte(out), &drives); err != nil || len(drives) != 2 {
		t.Fatalf("drives of the dev farm = %v:\n%s\nwant its 2 virtual drives only", err, out)
	}
	img := writeDiskImage(t, 4<<20, 3)
	mustRun(t, d.cli("image", "push", "demo:1", img, "--sign-key", filepath.Join(d.data, "signing", signKeyFile))...)
	if out := mustRun(t, d.cli("job", "submit", "demo:1", "--count", "2", "--watch")...); !strings.Contains(out, "SUCCEEDED: 2 of 2") {
		t.Fatalf("first order:\n%s", out)
	}

	out = mustRun(t, d.cli("job", "submit", "demo:1", "--count", "1", "--json")...)
	var job struct{ ID string }
	if err := json.Unmarshal([]byte(out), &job); err != nil {
		t.Fatalf("submit --json = %v:\n%s", err, out)
	}
	want := regexp.MustCompile(regexp.QuoteMeta(job.ID) + `\s+demo:1\s+PENDING\s+0/1\s+.*\n    waiting: needs 1 more drive: 2 written since inserted \(dev-1/virt-drive1.img, dev-1/virt-drive2.img\); ` +
		`a standing order takes only freshly inserted drives: pull and re-insert them \(virtual drives: imagefarm dev reinsert\)\n`)
	waitOutput(t, "job ls saying why the order waits", want, d.cli("job", "ls")...)

	f, err := os.Open(filepath.Join(d.data, "drives", "drive1.img"))
	if err != nil {
		t.Fatal(err)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_EX) // as a writer holds it
	if _, err := run(t, "dev", "reinsert", "--data", d.data, "--all"); err == nil || !strings.Contains(err.Error(), "virtual drive virt-drive1.img is being written: wait for its task to end") {
		t.Errorf("dev reinsert of a drive being written = %v, want it refused", err)
	}
	f.Close()

	out = mustRun(t, "dev", "reinsert", "--data", d.data, "virt-drive2.img")
	if !strings.Contains(out, "re-inserted dev-1/virt-drive2.img: a blank 8.0 MiB drive") {
		t.Errorf("dev reinsert said %q", out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := newRootCmd()
	var watch strings.Builder
	cmd.SetOut(&watch)
	cmd.SetErr(&watch)
	cmd.SetArgs(d.cli("job", "watch", job.ID))
	if err := cmd.ExecuteContext(ctx); err != nil || !regexp.MustCompile(`dev-1\s+virt-drive2.img\s+.*DONE`).MatchString(watch.String()) {
		t.Errorf("job watch of the second order = %v; want it to take the re-inserted drive:\n%s", err, watch.String())
	}
}

// waitOutput runs imagefarm args until its output matches want, for up to
// 10 seconds.
func waitOutput(t *testing.T, what string, want *regexp.Regexp, args ...string) {
	t.Helper()
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last output while waiting for %s: %s", what, last)
		}
	})
	testenv.Eventually(t, 10*time.Second, what, func() bool {
		out, err := run(t, args...)
		last = fmt.Sprintf("(%v)\n%s", err, out)
		return err == nil && want.MatchString(out)
	})
}

// TestControllerErrorsReadWell sends the CLI's bad requests to a real
// controller: each error says what was wrong and what to do, with no
// package's internal tag ("...: scheduler: bad count").
func TestControllerErrorsReadWell(t *testing.T) {
	d := startDev(t, 1, 8<<20)
	tag := regexp.MustCompile(`(^|: )(scheduler|state|controller|tokens|catalog|storage|imagefarm-\w+): `)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "submit", "nope:1", "--drive", "dev-1/nope"}, "image not found: nope:1 (list images with `imagefarm image ls`)"},
		{[]string{"job", "submit", "nope:1", "--count", "1", "--pool", "nope"}, "image not found: nope:1 (list images with `imagefarm image ls`)"},
		{[]string{"job", "watch", "jnope"}, "no job \"jnope\": list jobs with `imagefarm job ls`"},
		{[]string{"job", "cancel", "jnope"}, "no job \"jnope\": list jobs with `imagefarm job ls`"},
		{[]string{"job", "watch", "../x"}, "give it as `imagefarm job ls` lists it"},
	} {
		_, err := run(t, d.cli(tc.args...)...)
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) || tag.MatchString(err.Error()) {
			t.Errorf("imagefarm %s = %v, want an error ending %q, with no internal tag", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	img := writeDiskImage(t, 1<<20, 5)
	mustRun(t, d.cli("image", "push", "demo:1", img, "--sign-key", filepath.Join(d.data, "signing", signKeyFile))...)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "submit", "demo:1", "--count", "0"}, "count 0: a standing order writes 1 to 100000 drives"},
		{[]string{"job", "submit", "demo:1", "--drive", "dev-1/nope"}, `drive dev-1/nope: node dev-1 has no drive "nope" (its drives: virt-drive1.img)`},
		{[]string{"job", "submit", "demo:1", "--count", "1", "--pool", "nope"}, `selector: no node is in pool "nope" (pools: dev)`},
		{[]string{"job", "submit", "demo:1", "--count", "1", "--label", "a=b"}, "selector: no node has label a=b"},
	} {
		_, err := run(t, d.cli(tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || tag.MatchString(err.Error()) {
			t.Errorf("imagefarm %s = %v, want an error with %q, with no internal tag", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestDevReinsertChangesOnlyItsDrives re-inserts virtual drives of a
// stopped dev farm: each gets a new inode (a new serial) and its size; a
// link left at the hidden name it makes the new drive under is not
// followed, and names that are no drive of the farm change nothing.
func TestDevReinsertChangesOnlyItsDrives(t *testing.T) {
	data := t.TempDir()
	drives := filepath.Join(data, "drives")
	os.Mkdir(drives, 0o755)
	drive := filepath.Join(drives, "drive1.img")
	if err := os.WriteFile(drive, []byte(strings.Repeat("written", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(t.TempDir(), "precious")
	os.WriteFile(precious, []byte("keep me"), 0o644)
	if err := os.Link(precious, filepath.Join(drives, ".drive1.img.reinsert")); err != nil {
		t.Fatal(err)
	}
	inode := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(drive, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	before := inode()
	for _, name := range []string{"../precious", "dev-1/../../etc/passwd", "", "virt-drive2.img", "drive1"} {
		if _, err := run(t, "dev", "reinsert", "--data", data, name); err == nil || !strings.Contains(err.Error(), "its drives: virt-drive1.img") {
			t.Errorf("dev reinsert %q = %v, want it refused, naming the farm's drives", name, err)
		}
	}
	if inode() != before {
		t.Fatal("a refused reinsert replaced the drive")
	}
	out := mustRun(t, "dev", "reinsert", "--data", data, "drive1.img", "--json")
	var got []reinsertedJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].ID != "dev-1/virt-drive1.img" || got[0].Size != 7000 {
		t.Errorf("dev reinsert --json = %q (%v), want virt-drive1.img of 7000 bytes", out, err)
	}
	if b, _ := os.ReadFile(precious); string(b) != "keep me" {
		t.Errorf("the file linked at the hidden name now holds %.40q (%d bytes), want it untouched", b, len(b))
	}
	if b, err := os.ReadFile(drive); err != nil || len(b) != 7000 || strings.Contains(string(b), "written") || inode() == before {
		t.Errorf("the re-inserted drive: %d bytes (%v), new inode %v; want a blank drive of 7000 bytes, a new file", len(b), err, inode() != before)
	}
	if _, err := run(t, "dev", "reinsert", "--data", filepath.Join(data, "nope"), "--all"); err == nil || !strings.Contains(err.Error(), "start one with imagefarm dev --data") {
		t.Errorf("dev reinsert in a folder with no farm = %v", err)
	}
}
