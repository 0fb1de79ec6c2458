package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller/tokens"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// proc is a process the benchmark started and stops.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error // the result of Wait
}

func startProc(name, logFile string, bin string, args ...string) (*proc, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// A benchmark that dies (a panic, a kill) takes its processes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); log.Close() }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to end, and kills it after 10 s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports, without waiting, whether the process has ended.
func (p *proc) exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v", p.name, err)
	default:
		return nil
	}
}

// natsServer is NATS with JetStream, embedded or a process of its own.
type natsServer struct {
	url      string
	proc     *proc          // nil when embedded
	embedded *server.Server // nil when a process
}

func startNATS(ctx context.Context, bin, dir string) (*natsServer, error) {
	store := filepath.Join(dir, "nats")
	if bin == "" {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: store,
			NoLog: true, NoSigs: true})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			return nil, errors.New("embedded nats not ready after 10s")
		}
		return &natsServer{url: srv.ClientURL(), embedded: srv}, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := startProc("nats-server", filepath.Join(dir, "nats.log"), bin,
		"-js", "-sd", store, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	n := &natsServer{url: fmt.Sprintf("nats://127.0.0.1:%d", port), proc: p}
	for deadline := time.Now().Add(10 * time.Second); ; {
		nc, err := nats.Connect(n.url)
		if err == nil {
			nc.Close()
			return n, nil
		}
		if err := p.exited(); err != nil || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("nats-server at %s not ready: %v", n.url, errors.Join(err, ctx.Err()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *natsServer) stop() {
	if n.proc != nil {
		n.proc.stop()
		return
	}
	n.embedded.Shutdown()
}

func (n *natsServer) describe() string {
	if n.proc != nil {
		return "a separate nats-server process"
	}
	return "embedded in the bench process (its CPU is counted with the simulated imagers')"
}

// pushImage writes an image of size random bytes and pushes it as
// bench:1 with the imagefarm binary; it returns the manifest digest.
func pushImage(ctx context.Context, cfg Config) (string, error) {
	file := filepath.Join(cfg.Dir, "bench.img")
	data := make([]byte, cfg.ImageSize)
	rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, cfg.Imagefarm, "image", "push", "bench:1", file,
		"--store", storeURL(cfg.Dir), "--json").Output()
	if err != nil {
		return "", fmt.Errorf("imagefarm image push: %w", err)
	}
	var res struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Digest == "" {
		return "", fmt.Errorf("imagefarm image push printed %q: %v", out, err)
	}
	return res.Digest, nil
}

// tokenFile is where the controller writes the admin token the bench
// calls its API with (--bootstrap-token-file).
func tokenFile(cfg Config) string { return filepath.Join(cfg.Dir, "admin.token") }

// adminToken is the admin token the controller wrote.
func adminToken(cfg Config) (tokens.Bearer, error) {
	b, err := os.ReadFile(tokenFile(cfg))
	return tokens.Bearer{Secret: strings.TrimSpace(string(b))}, err
}

func storeURL(dir string) string { return "file://" + filepath.Join(dir, "store") }

// startController runs `imagefarm controller` and waits until it answers.
func startController(ctx context.Context, cfg Config, tls *farmTLS, natsURL string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	tlsFlags, err := tls.controllerFlags()
	if err != nil {
		return nil, "", err
	}
	creds, err := tls.creds("")
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startProc("controller", filepath.Join(cfg.Dir, "controller.log"), cfg.Imagefarm, append([]string{"controller",
		"--nats", natsURL, "--store", storeURL(cfg.Dir), "--listen", addr, "--heartbeat-ttl", cfg.TTL.String(),
		"--bootstrap-token-file", tokenFile(cfg)}, tlsFlags...)...)
	if err != nil {
		return nil, "", err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		p.stop()
		return nil, "", err
	}
	defer conn.Close()
	api := imagefarmv1.NewImageFarmServiceClient(conn)
	for deadline := time.Now().Add(30 * time.Second); ; {
		bearer, err := adminToken(cfg)
		if err == nil {
			_, err = api.ListImages(ctx, &imagefarmv1.ListImagesRequest{}, grpc.PerRPCCredentials(bearer))
		}
		if err == nil {
			return p, addr, nil
		}
		if perr := p.exited(); perr != nil || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, "", fmt.Errorf("controller at %s not ready (see %s/controller.log): %v", addr, cfg.Dir, errors.Join(err, perr))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// usage is what /proc says of a process: CPU time (user + system) and
// peak resident memory (VmHWM).
type usage struct {
	cpu     time.Duration
	peakRSS int64 // bytes
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func procUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// Fields after the command name, which may hold spaces, in parentheses.
	_, rest, _ := bytes.Cut(stat, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return usage{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	u := usage{cpu: time.Duration(utime+stime) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.peakRSS = kb << 10
		}
	}
	return u, nil
}
