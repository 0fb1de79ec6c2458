package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/internal/natsauth"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// proc is one process of the farm, which a test may kill, pause and start
// again with the same arguments. Each incarnation logs to a file of its own.
type proc struct {
	f     *farm
	name  string
	argv  []string
	debug string // --debug-addr of imagefarm processes, "" for others

	mu    sync.Mutex
	cmd   *exec.Cmd
	lives []life
}

// life is one incarnation of a proc: its log and when it ran.
type life struct {
	log        string
	start, end time.Time // end is zero while it runs
}

func (f *farm) newProc(name string, argv ...string) *proc {
	p := &proc{f: f, name: name, argv: argv}
	if argv[0] == bin.imagefarm {
		port, _ := testenv.FreePort()
		p.debug = fmt.Sprintf("127.0.0.1:%d", port)
		p.argv = append(p.argv, "--debug-addr", p.debug)
	}
	p.start()
	f.t.Cleanup(p.kill)
	return p
}

// start runs a new incarnation.
func (p *proc) start() {
	p.f.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	path := filepath.Join(p.f.dir, fmt.Sprintf("%s-%d.log", p.name, len(p.lives)))
	log, err := os.Create(path)
	if err != nil {
		p.f.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.f.t.Fatal(err)
	}
	p.cmd = cmd
	p.lives = append(p.lives, life{log: path, start: time.Now()})
}

// kill ends the running incarnation with SIGKILL, as a crash or power cut
// would, and waits for it.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT) // a paused process dies the same
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
	p.lives[len(p.lives)-1].end = time.Now()
}

// pause stops the process without it knowing (SIGSTOP), as a hung host or
// a network partition looks to the others; resume lets it go on.
func (p *proc) pause()  { p.signal(syscall.SIGSTOP) }
func (p *proc) resume() { p.signal(syscall.SIGCONT) }

func (p *proc) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.cmd.Process.Signal(s)
	}
}

// pid is the running incarnation's process id, or 0.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// farmConfig says what farm to start; zero fields take defaults.
type farmConfig struct {
	nodes     map[string]int // node id -> number of drives at start
	driveSize int            // bytes per virtual drive; default 64 MiB
	ttl       time.Duration  // controller heartbeat TTL; default the controller's
	ackWait   time.Duration  // dispatch ack wait; default the controller's
	// imagerStore, when set, turns the imagers' store URL (f.store with
	// read-only credentials) into the one they read from (e.g. through a
	// fault proxy); the controller reads f.store and writes its refs, the
	// CLI its chunks and manifests, each with its deploy/minio policy.
	imagerStore func(store string) string
	imagerArgs  []string // more flags for every imager
}

// farm is one running farm, each part a separate process: a NATS server,
// the controller and the imagers, all on 127.0.0.1, with virtual drives
// and a bucket on the package's MinIO server.
type farm struct {
	t          *testing.T
	cfg        farmConfig
	dir, store string // store: the bucket's URL with MinIO's root keys, for the test itself
	adminStore string // the store with deploy/minio/admin-policy.json, for the CLI
	pki        string // the farm CA's folder, made with imagefarm ca
	nats, ctl  string
	natsProc   *proc
	controller *proc
	imagers    map[string]*proc
	api        imagefarmv1.ImageFarmServiceClient
	token      string            // the admin token of api and cli
	images     map[string]string // image ref -> the file pushed
	// pulled: "node/drive id" -> when the test last pulled that key; a key
	// plugged back in at that path is a new, blank one.
	pulled map[string]time.Time
}

func startFarm(t *testing.T, nodes map[string]int) *farm {
	return startFarmWith(t, farmConfig{nodes: nodes})
}

func startFarmWith(t *testing.T, cfg farmConfig) *farm {
	t.Helper()
	if cfg.driveSize == 0 {
		cfg.driveSize = 64 << 20
	}
	dir, err := os.MkdirTemp("", "imagefarm-"+t.Name()+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // kept when the test fails, for its logs
		if t.Failed() {
			t.Logf("the farm's logs are in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	f := &farm{t: t, cfg: cfg, dir: dir, imagers: map[string]*proc{}, images: map[string]string{}}
	f.store = minioServer.Get(t).NewBucket(t) // a real MinIO process, as deployed
	natsPort, _ := testenv.FreePort()
	ctlPort := natsPort
	for ctlPort == natsPort { // "free a moment ago" may be the same port twice
		ctlPort, _ = testenv.FreePort()
	}
	f.nats, f.ctl = fmt.Sprintf("nats://127.0.0.1:%d", natsPort), fmt.Sprintf("127.0.0.1:%d", ctlPort)
	f.makeCerts()
	// Every push through f.cli is signed with the farm's key (IMAGEFARM_SIGN_KEY),
	// which every imager trusts.
	if out, err := exec.Command(bin.imagefarm, "key", "init", "--out", filepath.Join(f.dir, "signing")).CombinedOutput(); err != nil {
		t.Fatalf("imagefarm key init: %v\n%s", err, out)
	}
	f.natsProc = f.newProc("nats", bin.nats, "-c", f.natsConfig(natsPort))
	// Each reaches the store with its own credentials, as deployed
	// (deploy/minio): the imagers read only, the controller writes refs and
	// signatures, the CLI (an admin's) chunks and manifests.
	readOnly := minioServer.Get(t).PolicyURL(t, f.store, "imager-policy.json")
	f.adminStore = minioServer.Get(t).PolicyURL(t, f.store, "admin-policy.json")
	ctlStore := minioServer.Get(t).PolicyURL(t, f.store, "controller-policy.json")
	ctlArgs := []string{bin.imagefarm, "controller", "--nats", f.nats, "--nats-creds", f.natsCreds(""), "--store", ctlStore, "--listen", f.ctl,
		"--tls-cert", f.pkiFile("controller.crt"), "--tls-key", f.pkiFile("controller.key"), "--client-ca", f.pkiFile("ca.crt"),
		"--bootstrap-token-file", filepath.Join(f.dir, "admin.token")}
	if cfg.ttl > 0 {
		ctlArgs = append(ctlArgs, "--heartbeat-ttl", cfg.ttl.String())
	}
	if cfg.ackWait > 0 {
		ctlArgs = append(ctlArgs, "--ack-wait", cfg.ackWait.String())
	}
	f.controller = f.newProc("controller", ctlArgs...)
	imagerStore := readOnly
	if cfg.imagerStore != nil {
		imagerStore = cfg.imagerStore(imagerStore)
	}
	for node, drives := range cfg.nodes {
		os.MkdirAll(filepath.Join(f.dir, node), 0o755)
		for i := 1; i <= drives; i++ {
			f.addDrive(node, fmt.Sprintf("d%d.img", i))
		}
		args := []string{bin.imagefarm, "imager", "--node-id", node, "--pool", "bench", "--nats", f.nats, "--nats-creds", f.natsCreds(node), "--controller", f.ctl,
			"--store", imagerStore, "--virtual-drives", filepath.Join(f.dir, node), "--cache", filepath.Join(f.dir, node+"-cache"),
			"--log-level", "debug", "--ca", f.pkiFile("ca.crt"), "--tls-cert", f.pkiFile("node-" + node + ".crt"), "--tls-key", f.pkiFile("node-" + node + ".key"),
			"--trusted-keys", filepath.Join(f.dir, "signing", "signing.pub")}
		if cfg.ackWait > 0 {
			args = append(args, "--ack-wait", cfg.ackWait.String())
		}
		args = append(args, cfg.imagerArgs...)
		f.imagers[node] = f.newProc("imager-"+node, args...)
	}
	tlsCfg, err := pki.ClientConfig(f.pkiFile("ca.crt"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	f.token = f.adminToken()
	conn, err := grpc.NewClient(f.ctl, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(tokens.Bearer{Secret: f.token}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.api = imagefarmv1.NewImageFarmServiceClient(conn)
	t.Cleanup(func() { // before the processes stop
		if t.Failed() {
			f.dumpState()
		}
	})
	f.waitNodes(len(cfg.nodes))
	return f
}

// adminToken waits for the admin token the controller writes at its first
// start (--bootstrap-token-file), which the API client and f.cli use.
func (f *farm) adminToken() string {
	f.t.Helper()
	var token string
	testenv.Eventually(f.t, 30*time.Second, "the controller's bootstrap token (--bootstrap-token-file)", func() bool {
		b, err := os.ReadFile(filepath.Join(f.dir, "admin.token"))
		token = strings.TrimSpace(string(b))
		return err == nil && token != ""
	})
	return token
}

// natsConfig writes the NATS server's configuration as deploy/ does:
// JetStream, and a user for the controller and each node, with the
// permissions imagefarm nats-config gives them.
func (f *farm) natsConfig(port int) string {
	f.t.Helper()
	args := []string{"nats-config", "--dir", f.dir}
	for node := range f.cfg.nodes {
		args = append(args, "--node", node)
	}
	if out, err := exec.Command(bin.imagefarm, args...).CombinedOutput(); err != nil {
		f.t.Fatalf("imagefarm nats-config: %v\n%s", err, out)
	}
	conf := filepath.Join(f.dir, "nats-server.conf")
	text := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ninclude %s\n",
		port, filepath.Join(f.dir, "nats"), natsauth.ServerConfigFile)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return conf
}

// natsCreds is the NATS credentials file of node, or of the controller
// when node is "".
func (f *farm) natsCreds(node string) string {
	if node == "" {
		return filepath.Join(f.dir, natsauth.ControllerCredsFile)
	}
	return filepath.Join(f.dir, natsauth.ImagerCredsFile(node))
}

// makeCerts makes the farm's CA, the controller's certificate and each
// node's with imagefarm ca, as an admin would.
func (f *farm) makeCerts() {
	f.t.Helper()
	f.pki = filepath.Join(f.dir, "pki")
	cmds := [][]string{{"init"}, {"issue", "--controller", "--host", "127.0.0.1"}}
	for node := range f.cfg.nodes {
		cmds = append(cmds, []string{"issue", "--node", node})
	}
	for _, args := range cmds {
		if out, err := exec.Command(bin.imagefarm, append(append([]string{"ca"}, args...), "--dir", f.pki)...).CombinedOutput(); err != nil {
			f.t.Fatalf("imagefarm ca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// pkiFile is a file of the farm's CA folder.
func (f *farm) pkiFile(name string) string { return filepath.Join(f.pki, name) }

// addDrive makes a virtual drive full of 0xEE on node.
func (f *farm) addDrive(node, name string) string {
	p := filepath.Join(f.dir, node, name)
	// Written under a hidden name, which is no drive: a visible partial
	// file would be one for a moment, and a wait for the node's drives
	// could count it.
	tmp := filepath.Join(f.dir, node, "."+name+".tmp")
	if err := os.WriteFile(tmp, bytes.Repeat([]byte{0xEE}, f.cfg.driveSize), 0o644); err != nil {
		f.t.Fatal(err)
	}
	os.Rename(tmp, p) // appears whole, as a drive does
	return p
}

// drivePath is the file behind a virtual drive id ("virt-d1.img") on node.
func (f *farm) drivePath(node, driveID string) string {
	return filepath.Join(f.dir, node, strings.TrimPrefix(driveID, "virt-"))
}

// waitNodes waits until n nodes are online.
func (f *farm) waitNodes(n int) {
	f.t.Helper()
	testenv.Eventually(f.t, 60*time.Second, fmt.Sprintf("%d imagers online", n), func() bool {
		resp, err := f.api.ListNodes(context.Background(), &imagefarmv1.ListNodesRequest{})
		online := 0
		for _, node := range resp.GetNodes() {
			if err == nil && node.GetState() == imagefarmv1.NodeState_NODE_STATE_ONLINE {
				online++
			}
		}
		return online == n
	})
}

// waitNodeState waits until the controller says node is in state st.
func (f *farm) waitNodeState(node string, st imagefarmv1.NodeState) {
	f.t.Helper()
	testenv.Eventually(f.t, 30*time.Second, fmt.Sprintf("node %s %v", node, st), func() bool {
		resp, err := f.api.ListNodes(context.Background(), &imagefarmv1.ListNodesRequest{})
		for _, n := range resp.GetNodes() {
			if err == nil && n.GetId() == node && n.GetState() == st {
				return true
			}
		}
		return false
	})
}

// waitDrives waits until the controller lists n virtual drives on node
// (the host's own disks are listed too, refused by the guards).
func (f *farm) waitDrives(node string, n int) {
	f.t.Helper()
	testenv.Eventually(f.t, 30*time.Second, fmt.Sprintf("%d drives on %s", n, node), func() bool {
		resp, err := f.api.ListDrives(context.Background(), &imagefarmv1.ListDrivesRequest{})
		have := 0
		for _, d := range resp.GetDrives() {
			if d.GetNodeId() == node && strings.HasPrefix(d.GetId(), "virt-") {
				have++
			}
		}
		return err == nil && have == n
	})
}

// cli runs the imagefarm binary against the farm and returns its output
// and exit code.
func (f *farm) cli(args ...string) (string, int) {
	f.t.Helper()
	cmd := exec.Command(bin.imagefarm, append(args, "--store", f.adminStore, "--controller", f.ctl, "--ca", f.pkiFile("ca.crt"))...)
	cmd.Env = append(os.Environ(), "IMAGEFARM_SIGN_KEY="+filepath.Join(f.dir, "signing", "signing.key"), "IMAGEFARM_TOKEN="+f.token)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatal(err)
	}
	return string(out), code
}

// pushImage pushes an image of size bytes that does not compress (so a
// throttled store paces its download), different for each ref, in 1 MiB
// chunks, and returns its file.
func (f *farm) pushImage(ref string, size int) string {
	f.t.Helper()
	img := filepath.Join(f.dir, "image-"+strings.ReplaceAll(ref, ":", "_")+".img")
	data := make([]byte, size)
	rand.NewChaCha8(sha256.Sum256([]byte(ref))).Read(data)
	os.WriteFile(img, data, 0o644)
	if out, code := f.cli("image", "push", ref, img, "--chunk-size", fmt.Sprint(1<<20)); code != 0 {
		f.t.Fatalf("push: %s", out)
	}
	f.images[ref] = img
	return img
}

// submit submits a job and returns its id.
func (f *farm) submit(req *imagefarmv1.SubmitJobRequest) string {
	f.t.Helper()
	resp, err := f.api.SubmitJob(context.Background(), req)
	if err != nil {
		f.t.Fatalf("submit %s: %v", req.GetImageRef(), err)
	}
	return resp.GetJob().GetId()
}

func drivesJob(ref string, ids ...string) *imagefarmv1.SubmitJobRequest {
	return &imagefarmv1.SubmitJobRequest{ImageRef: ref,
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Drives{Drives: &imagefarmv1.DriveList{DriveIds: ids}}}}
}

func standingOrder(ref string, count uint32) *imagefarmv1.SubmitJobRequest {
	return &imagefarmv1.SubmitJobRequest{ImageRef: ref,
		Targets: &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_StandingOrder{StandingOrder: &imagefarmv1.StandingOrder{
			Count: count, Selector: &imagefarmv1.Selector{Pool: "bench"}}}}}
}

// job returns the job with its tasks, or nil while the controller does not
// answer.
func (f *farm) job(id string) *imagefarmv1.Job {
	resp, err := f.api.GetJob(context.Background(), &imagefarmv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return resp.GetJob()
}

func waitFinal(t *testing.T, f *farm, id string) *imagefarmv1.Job {
	t.Helper()
	var job *imagefarmv1.Job
	testenv.Eventually(f.t, 120*time.Second, "final state of job "+id, func() bool {
		job = f.job(id)
		return job.GetState().Final()
	})
	return job
}

// running reports whether a task is on its drive: fetching, writing or
// verifying.
func running(s imagefarmv1.TaskState) bool {
	return s >= imagefarmv1.TaskState_TASK_STATE_FETCHING && s <= imagefarmv1.TaskState_TASK_STATE_VERIFYING
}

// countTasks counts the tasks of job on node (any node for "") for which
// pred holds.
func countTasks(job *imagefarmv1.Job, node string, pred func(*imagefarmv1.Task) bool) int {
	n := 0
	for _, task := range job.GetTasks() {
		if (node == "" || task.GetNodeId() == node) && pred(task) {
			n++
		}
	}
	return n
}

// withEndpoint returns store URL u with its endpoint replaced by addr.
func withEndpoint(u, addr string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	q := parsed.Query()
	q.Set("endpoint", addr)
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// dumpState logs the farm's drives and jobs as the controller sees them,
// for a failed wait.
func (f *farm) dumpState() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if resp, err := f.api.ListDrives(ctx, &imagefarmv1.ListDrivesRequest{}); err == nil {
		for _, d := range resp.GetDrives() {
			f.t.Logf("drive %s/%s %v task=%q last=%q", d.GetNodeId(), d.GetId(), d.GetState(), d.GetTaskId(), d.GetLastTaskId())
		}
	}
	if resp, err := f.api.ListJobs(ctx, &imagefarmv1.ListJobsRequest{}); err == nil {
		for _, j := range resp.GetJobs() {
			f.t.Logf("job %s %v %v", j.GetId(), j.GetState(), j.GetTaskCounts())
			for _, task := range f.job(j.GetId()).GetTasks() {
				f.t.Logf("  task %s %s/%s %v %s", task.GetId(), task.GetNodeId(), task.GetDrive().GetId(), task.GetState(), task.GetFailure().GetMessage())
			}
		}
	}
}

// usage is what a process holds: goroutines, open files and heap in use
// after a garbage collection.
type usage struct {
	goroutines, files int
	heap              uint64
}

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, %d open files, %.1f MiB heap", u.goroutines, u.files, float64(u.heap)/(1<<20))
}

// usage reads the running incarnation's usage from its debug endpoint and
// /proc, after making it collect garbage.
func (p *proc) usage() (usage, error) {
	var u usage
	gc, err := http.Get("http://" + p.debug + "/debug/pprof/heap?gc=1")
	if err != nil {
		return u, err
	}
	io.Copy(io.Discard, gc.Body)
	gc.Body.Close()
	resp, err := http.Get("http://" + p.debug + "/debug/vars")
	if err != nil {
		return u, err
	}
	defer resp.Body.Close()
	var vars struct {
		Goroutines int `json:"goroutines"`
		Memstats   struct {
			HeapInuse uint64
		} `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		return u, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid()))
	if err != nil {
		return u, err
	}
	return usage{goroutines: vars.Goroutines, files: len(fds), heap: vars.Memstats.HeapInuse}, nil
}
