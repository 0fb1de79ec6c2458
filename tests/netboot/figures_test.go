package netboot_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/deployenv/initproc"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// The figures of tests/bench/netboot.sh (issue 13), which runs
// TestFigures with them; CI never gives -figures-image, so it skips.
var (
	figImage  = flag.String("figures-image", "", "TestFigures: the disk-shaped image each VM deploys (tests/bench/mkimage); without it TestFigures skips")
	figChains = flag.String("figures-chains", "secure-boot,ipxe,bios", "TestFigures: the chains each round boots one VM of, one after another")
	figRounds = flag.Int("figures-rounds", 3, "TestFigures: how many times each chain boots")
	figAtOnce = flag.Int("figures-at-once", 0, "TestFigures: then this many VMs of the first chain boot and deploy at once")
	figSideBy = flag.Bool("figures-side-by-side", false, "TestFigures: the chains of a round boot at once, not one after another (a machine too slow for 3 rounds one VM at a time)")
	figDD     = flag.Bool("figures-dd", true, "TestFigures: after its deploy, each single VM copies the raw image with imagefarm.debug.dd (the baseline)")
)

// ddPort is where the lab serves the raw image for imagefarm.debug.dd.
const ddPort = "8099"

// TestFigures is tests/bench/netboot.sh's measurement: a dev farm's
// controller plans the boots (as in TestNetbootDeploysADevice), holding
// the image; for each round and chain one VM with a disk of its own gets
// a job, netboots, enrolls, writes and verifies the image and then, with
// -figures-dd, copies the same raw image over HTTP onto the same disk
// with imagefarm.debug.dd (O_DIRECT write, O_DIRECT read back and
// SHA-256) before it reboots. Then -figures-at-once VMs do the deploy at
// once (netboot.sh runs that with -figures-dd=false and -figures-rounds=0).
// Each VM's figures are one "FIGURE-JSON" line.
func TestFigures(t *testing.T) {
	if *figImage == "" {
		t.Skip("TestFigures is tests/bench/netboot.sh's: it runs only with -figures-image")
	}
	e := getEnv(t)
	vmLimit = 60 * time.Minute
	image, err := filepath.Abs(*figImage)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	digest := fileSHA256(t, image)
	diskSize := fi.Size() + 64<<20
	chains := strings.Split(*figChains, ",")
	var f *figureLab
	macs := map[string]string{"secure-boot": "52:54:00:2f:00:", "ipxe": "52:54:00:2f:01:", "bios": "52:54:00:2f:02:"}
	var serve []string
	for _, c := range chains {
		if c != "ipxe" && c != "secure-boot" && c != "bios" {
			t.Fatalf("-figures-chains: %q: want secure-boot, ipxe or bios", c)
		}
		if c == "ipxe" {
			for i := range max(*figAtOnce, 1) {
				serve = append(serve, "--chain", fmt.Sprintf("%s%02x=ipxe", macs[c], i))
			}
		}
	}
	kargs := []string{"console=ttyS0", "quiet", "panic=-1", "no_timer_check"}
	if *figDD {
		kargs = append(kargs, "imagefarm.disk_serial=VDA-1", fmt.Sprintf("imagefarm.disk_size=%d", diskSize),
			"imagefarm.debug.dd=http://"+serviceAddr+":"+ddPort+"/image")
	}
	f = newFigureLab(t, e, image, kargs, serve)
	for round := range *figRounds {
		var wg sync.WaitGroup
		for _, c := range chains {
			v := f.vm(c, macs[c]+"00", diskSize)
			f.submit(t, v)
			tap := f.l.ns.AddTap(t)
			one := func() {
				r := f.l.boot(t, v, tap, initproc.ReportPrefix, initproc.DeployPrefix, initproc.DDPrefix)
				f.measure(t, c, round, 1, r, fi.Size(), digest)
			}
			if *figSideBy {
				wg.Go(one)
			} else {
				one()
			}
		}
		wg.Wait()
	}
	if *figAtOnce == 0 {
		return
	}
	var vms []vm
	for i := range *figAtOnce {
		v := f.vm(chains[0], fmt.Sprintf("%s%02x", macs[chains[0]], i), diskSize)
		v.name = fmt.Sprintf("%s-%d", v.name, i)
		f.submit(t, v)
		vms = append(vms, v)
	}
	var wg sync.WaitGroup
	for _, v := range vms {
		tap := f.l.ns.AddTap(t)
		wg.Go(func() {
			r := f.l.boot(t, v, tap, initproc.ReportPrefix, initproc.DeployPrefix)
			f.measure(t, chains[0], 0, len(vms), r, fi.Size(), digest)
		})
	}
	wg.Wait()
}

// figureLab is TestFigures's lab: the dev farm holding the image, the
// boot service planning with it, the raw image served for the dd.
type figureLab struct {
	l     *lab
	farm  *testenv.Proc
	cli   []string
	chain map[string]string // MAC to chain
	mu    sync.Mutex
}

func newFigureLab(t *testing.T, e bootEnv, image string, kargs, serve []string) *figureLab {
	t.Helper()
	f := &figureLab{}
	kernel, initrd := e.kernel(), e.initrd()
	f.l = newLab(t, e, labConfig{nextServer: true, kernelArgs: kargs, serve: serve, controller: func(l *lab) []string {
		f.farm = testenv.Start(t, "imagefarm-dev", l.ns.Command(t, e.imagefarm, "dev", "--data", filepath.Join(l.dir, "farm"), "--listen", controllerAddr,
			"--drives", "1", "--drive-size", "16MiB"))
		l.waitFor(f.farm, "from another terminal")
		f.cli = devExports(t, f.farm.Output(t))
		out := l.cli(t, f.cli, "token", "create", "--name", "netboot", "--role", "operator")
		op := regexp.MustCompile(`ift_[A-Za-z0-9_-]+`).FindString(out)
		ca := ""
		for _, kv := range f.cli {
			if v, ok := strings.CutPrefix(kv, "IMAGEFARM_CA="); ok {
				ca = v
			}
		}
		start := time.Now()
		l.cli(t, f.cli, "image", "push", "disk:1", image)
		t.Logf("FIGURE image push %.1fs", time.Since(start).Seconds())
		dir := filepath.Join(l.dir, "dd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(image, filepath.Join(dir, "image")); err != nil {
			t.Fatal(err)
		}
		dd := testenv.Start(t, "python3-http", l.ns.Command(t, "python3", "-u", "-m", "http.server", "--bind", serviceAddr, "--directory", dir, ddPort))
		testenv.Eventually(t, 5*time.Minute, "the raw image's HTTP server", func() bool { return strings.Contains(dd.Output(t), "Serving HTTP") })
		return []string{"--controller", controllerAddr, "--ca", ca, "--token", op,
			"--kernel", kernel, "--initramfs", withFarmCA(t, initrd, ca)}
	}})
	return f
}

// vm is a VM of chain with a fresh disk of size bytes, serial VDA-1.
func (f *figureLab) vm(chain, mac string, size int64) vm {
	disk := filepath.Join(f.l.dir, "disk-"+strings.ReplaceAll(mac, ":", ""))
	if err := os.WriteFile(disk, nil, 0o644); err != nil || os.Truncate(disk, size) != nil {
		f.l.t.Fatalf("disk %s: %v", disk, err)
	}
	v := vm{name: chain, mac: mac, noPXE6: true,
		qemu: []string{"-drive", "file=" + disk + ",if=none,id=d0,format=raw,cache=none", "-device", "virtio-blk-pci,drive=d0,serial=VDA-1"}}
	switch chain {
	case "secure-boot":
		v.fw = ovmfSecure
	case "ipxe":
		v.fw = ovmf
	default:
		v.fw, v.nic = seabios, "virtio-net-pci"
	}
	return v
}

// submit gives v's serial a job for the image.
func (f *figureLab) submit(t *testing.T, v vm) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.l.cli(t, f.cli, "job", "submit", "disk:1", "--device", v.serial())
}

// figure is one VM's figures.
type figure struct {
	Chain  string `json:"chain"`
	Round  int    `json:"round"`
	AtOnce int    `json:"at_once"`
	// SideBySide: the chains of the round booted at once.
	SideBySide bool   `json:"side_by_side,omitempty"`
	VM         string `json:"vm"`
	// Seconds from power-on to the deploy environment's report, to the
	// controller's "device enrolled" (registered), to the deploy's
	// result on the console (written and verified).
	Report     float64 `json:"report_s"`
	Registered float64 `json:"registered_s"`
	Verified   float64 `json:"verified_s"`
	// DeploySeconds is the deploy in the VM: enroll, fetch, write,
	// verify, report.
	DeploySeconds float64 `json:"deploy_s"`
	ImageBytes    int64   `json:"image_bytes"`
	TFTPBytes     int64   `json:"tftp_bytes"`
	HTTPBytes     int64   `json:"http_bytes"`
	// The baseline, when run: imagefarm.debug.dd's write and read back.
	DDWrite float64 `json:"dd_write_s,omitempty"`
	DDRead  float64 `json:"dd_read_s,omitempty"`
}

// measure checks r's deploy (and dd) and logs its figures.
func (f *figureLab) measure(t *testing.T, chain string, round, atOnce int, r *run, size int64, digest string) {
	t.Helper()
	var d initproc.Deploy
	if err := json.Unmarshal([]byte(consoleLine(r.console, initproc.DeployPrefix)), &d); err != nil || d.State != "TASK_STATE_DONE" {
		t.Errorf("%s: deploy %+v (%v), want TASK_STATE_DONE; console:\n%s", r.vm.name, d, err, r.console)
		return
	}
	fig := figure{Chain: chain, Round: round, AtOnce: atOnce, SideBySide: atOnce == 1 && *figSideBy, VM: r.vm.name, Report: r.seen[initproc.ReportPrefix].Seconds(),
		Verified: r.seen[initproc.DeployPrefix].Seconds(), DeploySeconds: d.Seconds, ImageBytes: size}
	f.mu.Lock()
	for _, rec := range f.farmRecords("device enrolled", r.vm.serial()) {
		if at := rec.time().Sub(r.start); at > 0 && fig.Registered == 0 {
			fig.Registered = at.Seconds()
		}
	}
	f.mu.Unlock()
	ip := f.l.leaseOf(r.vm.mac)
	for _, s := range f.l.records("tftp sent", map[string]string{"client": ip}) {
		if s.time().After(r.start) {
			fig.TFTPBytes += s.bytes()
		}
	}
	for _, s := range f.l.records("http sent", nil) {
		if strings.HasPrefix(s["client"], ip+":") && s.time().After(r.start) {
			fig.HTTPBytes += s.bytes()
		}
	}
	if line := consoleLine(r.console, initproc.DDPrefix); line != "" {
		var dd initproc.DD
		if err := json.Unmarshal([]byte(line), &dd); err != nil || dd.Error != "" || dd.SHA256 != digest || dd.Bytes != size {
			t.Errorf("%s: dd %+v (%v), want %d bytes read back as sha256 %s", r.vm.name, dd, err, size, digest)
		}
		fig.DDWrite, fig.DDRead = dd.WriteSeconds, dd.ReadSeconds
	}
	b, _ := json.Marshal(fig)
	t.Logf("FIGURE-JSON %s", b)
}

// farmRecords are the dev farm's log lines msg about serial.
func (f *figureLab) farmRecords(msg, serial string) []logRecord {
	var out []logRecord
	for _, line := range strings.Split(f.farm.Output(f.l.t), "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) && strings.Contains(line, "serial="+serial+" ") {
			m := regexp.MustCompile(`time=(\S+)`).FindStringSubmatch(line)
			if m != nil {
				out = append(out, logRecord{"time": m[1]})
			}
		}
	}
	return out
}

// consoleLine is what follows prefix on its last line of console.
func consoleLine(console, prefix string) string {
	line := ""
	for _, s := range strings.Split(console, "\n") {
		if _, after, ok := strings.Cut(s, prefix); ok {
			line = strings.TrimSpace(after)
		}
	}
	return line
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
