package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// stopCase is a long-running command, stopped once it is busy.
type stopCase struct {
	name  string
	sig   syscall.Signal
	args  []string
	ready func(p *cliProc) (what string, ok func() bool) // the command is busy
	say   string                                         // what it must say when stopped
	empty []string                                       // folders it must leave as it found them: empty
	code  int                                            // its exit status
}

// TestSignalStopsLongCommands starts every long-running command as the
// real binary, waits until it is busy (a transfer trickling through a
// throttled or stalled store, a stream open, a server serving), signals it
// and checks that it exits, says so, and leaves no temporary file or
// folder behind. How soon is not asserted (a loaded machine is slow): a
// command that does not stop by itself is ended by stopGrace, so every
// one exits within a second of the signal by construction.
func TestSignalStopsLongCommands(t *testing.T) {
	m := minioServer.Get(t)
	store := m.NewBucket(t)
	mustRun(t, "--store", store, "image", "push", "disk:1", writeDiskImage(t, 32<<20, 9), "--chunk-size", "1048576")
	mediaInputs(t, store)
	slow := testenv.StartFaultProxy(t, m.Endpoint) // reads trickle at 256 KiB/s
	slow.SetRate(256 << 10)
	stalled := testenv.StartFaultProxy(t, m.Endpoint) // nothing comes back at all
	stalled.SetLatency(time.Hour)

	pullDir, mediaOut, mediaWork, envOut := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	testenv.DebianKernel(t)
	staticInit := testenv.StaticProgram(t)
	drives, cache := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(drives, "d1.img"), make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	watch := watchFarm(imagefarmv1.JobState_JOB_STATE_SUCCEEDED)
	watch.events, watch.hang = watch.events[:3], true
	trail := &hangingTrail{fakeTrail: fakeTrail{records: testTrail(t)}, listed: make(chan struct{}, 1)}
	said := func(s string) func(p *cliProc) (string, func() bool) {
		return func(p *cliProc) (string, func() bool) { return "output " + s, p.said(s) }
	}
	cases := []stopCase{
		{name: "image push", sig: syscall.SIGINT, args: []string{"--store", stalled.StoreURL(store), "image", "push", "big:1", writeDiskImage(t, 16<<20, 10)},
			ready: func(*cliProc) (string, func() bool) {
				return "a request to the store", func() bool { return stalled.Conns() > 0 }
			}},
		{name: "image pull", args: []string{"--store", slow.StoreURL(store), "image", "pull", "disk:1", filepath.Join(pullDir, "out.img")},
			ready: func(*cliProc) (string, func() bool) {
				return "the temporary file", func() bool { return len(names(t, pullDir)) > 0 }
			}, empty: []string{pullDir}},
		{name: "write", args: []string{"--store", slow.StoreURL(store), "write", "disk:1", "--drive", "virt-d1.img", "--virtual-drives", drives, "--cache", cache},
			ready: func(*cliProc) (string, func() bool) {
				return "a chunk in the node cache", func() bool { return cachedChunks(t, cache) > 0 }
			}},
		{name: "media build", args: []string{"--store", slow.StoreURL(store), "media", "build", "--winpe", "winpe:1", "--wim", "win11:1",
			"--drivers", "drivers-7440:1", "--model", "Latitude 7440", "--out", filepath.Join(mediaOut, "key.img"), "--work-dir", mediaWork},
			ready: func(*cliProc) (string, func() bool) {
				return "inputs being fetched", func() bool { return len(names(t, mediaWork)) > 0 && slow.Conns() > 1 }
			}, empty: []string{mediaOut, mediaWork}},
		{name: "netboot build-env", args: []string{"netboot", "build-env", "--init", staticInit, "--out", filepath.Join(envOut, "env")},
			ready: func(*cliProc) (string, func() bool) {
				return "the initramfs being written", func() bool {
					m, _ := filepath.Glob(filepath.Join(envOut, ".env.build-*", "initrd"))
					return len(m) > 0
				}
			}, empty: []string{envOut}},
		{name: "job watch", args: []string{"--controller", serveFakeAPI(t, watch), "--insecure", "job", "watch", "j1"},
			ready: func(*cliProc) (string, func() bool) {
				return "the watch", func() bool {
					watch.mu.Lock()
					defer watch.mu.Unlock()
					return len(watch.watches) > 0
				}
			}, say: "job j1 goes on: imagefarm job watch j1"},
		{name: "audit", args: []string{"--controller", serveFakeAPI(t, trail), "--insecure", "audit"},
			ready: func(*cliProc) (string, func() bool) {
				return "the audit stream", func() bool { return len(trail.listed) > 0 }
			}},
		{name: "dev", args: []string{"dev", "--data", t.TempDir()}, ready: said("from another terminal")},
		{name: "controller", args: []string{"controller", "--nats", natsURL(t), "--insecure", "--store", "file://" + t.TempDir(), "--listen", "127.0.0.1:0"},
			ready: said("controller serving")},
		{name: "imager", args: []string{"imager", "--node-id", "n1", "--nats", natsURL(t), "--insecure", "--store", store, "--allow-unsigned",
			"--virtual-drives", t.TempDir(), "--cache", t.TempDir()},
			ready: said("node epoch")},
		{name: "netboot serve", args: append(netbootFiles(t), "--http-port", fmt.Sprint(freeTCPPort(t)), "--tftp-port", fmt.Sprint(freeUDPPort(t))),
			ready: said("boot service ready")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sig == 0 {
				tc.sig = syscall.SIGTERM
			}
			args := tc.args
			if tc.name == "imager" {
				args = append(args, "--controller", startController(t, args[4]))
			}
			p := startCLI(t, args...)
			what, ready := tc.ready(p)
			p.waitUntil(t, what, ready)
			took, code := p.signal(t, tc.sig)
			name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[tc.sig]
			t.Logf("%s: exited %d %v after %s", tc.name, code, took.Round(time.Millisecond), name)
			out := p.out.String()
			if !strings.Contains(out, "stopped by "+name) || (tc.say != "" && !strings.Contains(out, tc.say)) || strings.Contains(out, "context canceled") {
				t.Errorf("%s said, when stopped:\n%s\nwant \"stopped by %s\" %q and no \"context canceled\"", tc.name, out, name, tc.say)
			}
			if code != 128+int(tc.sig) && code != 0 {
				t.Errorf("%s exited %d, want %d (or 0 for a clean shutdown)", tc.name, code, 128+int(tc.sig))
			}
			for _, dir := range tc.empty {
				if left := names(t, dir); len(left) > 0 {
					t.Errorf("%s left %v in %s", tc.name, left, dir)
				}
			}
		})
	}
}

// TestSignalStopsCommandStuckInWrite stops a pull to a stdout that nobody
// reads: it is stuck in a write no context reaches, and must still exit
// on SIGTERM (stopGrace ends it), saying so.
func TestSignalStopsCommandStuckInWrite(t *testing.T) {
	store := "file://" + t.TempDir()
	mustRun(t, "--store", store, "image", "push", "disk:1", writeDiskImage(t, 8<<20, 11))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := startCLIStdout(t, w, "--store", store, "image", "pull", "disk:1", "-")
	w.Close()
	p.waitUntil(t, "a full pipe", func() bool {
		n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ) // FIONREAD: bytes waiting in the pipe
		return err == nil && n >= 64<<10
	})
	took, code := p.signal(t, syscall.SIGTERM)
	t.Logf("pull stuck writing to stdout exited %v after SIGTERM", took.Round(time.Millisecond))
	if code != 128+int(syscall.SIGTERM) || !strings.Contains(p.out.String(), "stopped by SIGTERM") {
		t.Errorf("pull stuck writing to stdout exited %d, saying %q; want %d, stopped by SIGTERM",
			code, p.out, 128+int(syscall.SIGTERM))
	}
}

// hangingTrail streams its records, then keeps the stream open until the
// client goes away: a long audit read.
type hangingTrail struct {
	fakeTrail
	listed chan struct{}
}

func (h *hangingTrail) ListAudit(req *imagefarmv1.ListAuditRequest, stream grpc.ServerStreamingServer[imagefarmv1.ListAuditResponse]) error {
	if err := h.fakeTrail.ListAudit(req, stream); err != nil {
		return err
	}
	select {
	case h.listed <- struct{}{}:
	default:
	}
	<-stream.Context().Done()
	return nil
}

// names lists what dir holds, hidden names included.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// cachedChunks counts the chunk files in a node cache.
func cachedChunks(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") && !strings.Contains(p, "/state/") {
			n++
		}
		return nil
	})
	return n
}

// natsURL starts a NATS server with JetStream for the test.
func natsURL(t *testing.T) string {
	ns, _ := testenv.NATS(t)
	return ns.ClientURL()
}

// startController runs a plaintext controller process on the NATS server
// at nats for the rest of the test, and returns its address.
func startController(t *testing.T, nats string) string {
	t.Helper()
	p := startCLI(t, "controller", "--nats", nats, "--insecure", "--store", "file://"+t.TempDir(), "--listen", "127.0.0.1:0")
	addr := regexp.MustCompile(`controller serving" addr=(\S+)`)
	p.waitUntil(t, "the controller serving", func() bool { return addr.MatchString(p.out.String()) })
	return addr.FindStringSubmatch(p.out.String())[1]
}
