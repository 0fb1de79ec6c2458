package initproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/imager/drive"
)

// ReportPrefix starts the console line that carries the Report, so that
// whoever reads the console (a test, a technician's capture) finds it
// among the kernel's messages.
const ReportPrefix = "IMAGEFARM-REPORT "

// Report is what the environment found, printed on the console as
// ReportPrefix and one line of JSON.
type Report struct {
	Identity
	Disks []Disk `json:"disks"`
	// Target is the disk the plan names (imagefarm.disk_serial and
	// _size), found and checked internal by SelectDisk; a refusal is in
	// Errors.
	Target     *Disk  `json:"target,omitempty"`
	Lease      *Lease `json:"lease,omitempty"`
	Controller string `json:"controller,omitempty"`
	// Token says whether a boot token was given; the token is never shown.
	Token  bool   `json:"token"`
	Kernel string `json:"kernel"` // the running kernel's release
	// Modules is how many kernel modules loaded.
	Modules int `json:"modules_loaded"`
	// Uptime is how long after the kernel started the report was made.
	Uptime float64 `json:"uptime_seconds"`
	// Seconds is how long each step took: "modules", "dhcp", "disks".
	Seconds map[string]float64 `json:"seconds"`
	// Then is what the environment does next.
	Then   Then     `json:"then"`
	Errors []string `json:"errors,omitempty"`
}

// IsInit reports whether a process with this pid and argv[0] is the
// deploy environment's init: the kernel starts /init as PID 1 with
// argv[0] "/init". A container that runs imagefarm as its PID 1 is not
// taken for it, since its argv[0] is imagefarm's own name.
func IsInit(pid int, argv0 string) bool {
	return argv0 == "/init" || pid == 1 && filepath.Base(argv0) == "init"
}

// Main is the deploy environment's init. It never returns: PID 1
// exiting panics the kernel.
func Main() {
	// The kernel starts init without a PATH; the reset engine runs the
	// tools build-env --reset-tools put in these folders.
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	mountAll()
	console := os.Stdout // the kernel opened /dev/console for init
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.SetOutput(os.Stderr) // u-root's DHCP client logs with the log package
	log.SetPrefix("dhclient: ")
	var rep Report
	var params Params
	func() {
		defer func() {
			if p := recover(); p != nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("panic: %v", p))
			}
		}()
		rep, params = Run(context.Background(), logger)
	}()
	printReport(console, rep)
	then := rep.Then
	if params.Token != "" && params.Controller != "" {
		d := deployRecovered(params, rep, logger)
		printLine(console, DeployPrefix, d)
		then = d.Then
	}
	if params.DebugDD != "" {
		printLine(console, DDPrefix, debugDD(context.Background(), params.DebugDD, rep.Target))
	}
	finish(then, logger)
}

// deployRecovered is deploy, with a panic in it its Error: PID 1 must
// not exit.
func deployRecovered(params Params, rep Report, logger *slog.Logger) (d Deploy) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			d = Deploy{Then: ThenReboot, Error: fmt.Sprintf("panic: %v", p)}
		}
		d.Seconds = time.Since(start).Seconds()
	}()
	return deploy(context.Background(), params, rep, thisMachine, logger)
}

// Run does the environment's discovery and returns its report and the
// command line's parameters. Failures are in the report's Errors; Run
// goes on with what it can.
func Run(ctx context.Context, logger *slog.Logger) (Report, Params) {
	rep := Report{Disks: []Disk{}, Seconds: map[string]float64{}}
	fail := func(err error) {
		if err != nil {
			logger.Error("deploy environment", "err", err)
			rep.Errors = append(rep.Errors, err.Error())
		}
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	fail(err)
	params, err := ParseParams(string(cmdline))
	fail(err)
	rep.Controller, rep.Token, rep.Then = params.Controller, params.Token != "", params.Then
	rep.Kernel = release()
	start := time.Now()
	rep.Modules, err = loadModules(rep.Kernel)
	fail(err)
	rep.Seconds["modules"] = time.Since(start).Seconds()

	drives, netErr, diskErr := networkAndDisks(ctx, &rep, params.BootMAC, params.Disk)
	fail(netErr)
	fail(diskErr)
	for _, d := range drives {
		rep.Disks = append(rep.Disks, DiskOf(d))
	}
	if params.Disk != nil {
		d, err := SelectDisk(drives, *params.Disk)
		fail(err)
		if err == nil {
			target := DiskOf(d)
			rep.Target = &target
		}
	}
	rep.Identity = ReadIdentity("/sys")
	rep.Uptime = uptime()
	return rep, params
}

// networkAndDisks brings the network up (rep.Lease) and lists the
// disks once they have settled (and the one want names is there), at
// once: each waits on hardware. It records how long each took in
// rep.Seconds.
func networkAndDisks(ctx context.Context, rep *Report, bootMAC string, want *Want) (drives []drive.Drive, netErr, diskErr error) {
	var wg sync.WaitGroup
	var dhcpTook float64
	wg.Go(func() {
		start := time.Now()
		rep.Lease, netErr = bringUp(ctx, "/sys", bootMAC)
		dhcpTook = time.Since(start).Seconds()
	})
	start := time.Now()
	drives, diskErr = settledDrives(ctx, "/sys", want)
	rep.Seconds["disks"] = time.Since(start).Seconds()
	wg.Wait()
	rep.Seconds["dhcp"] = dhcpTook
	return drives, netErr, diskErr
}

// printReport writes the report line.
func printReport(w io.Writer, rep Report) { printLine(w, ReportPrefix, rep) }

// printLine writes prefix and v as one line of JSON, which always fits
// on one line.
func printLine(w io.Writer, prefix string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(strconv.Quote(err.Error()))
	}
	fmt.Fprintf(w, "\n%s%s\n", prefix, data)
}

// mountAll mounts what the environment needs: /proc, /sys, /dev
// (devtmpfs: the kernel makes the device nodes; there is no udev), and
// tmpfs on /run and /tmp. A failure is logged; what follows reports
// what it could not do.
func mountAll() {
	for _, m := range []struct{ fstype, target string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/run"}, {"tmpfs", "/tmp"},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "mkdir %s: %v\n", m.target, err)
		}
		err := unix.Mount(m.fstype, m.target, m.fstype, unix.MS_NOSUID, "")
		if err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "mount %s on %s: %v\n", m.fstype, m.target, err)
		}
	}
}

// finish does what then says: power off, reboot, or wait for ever (the
// console stays readable; PID 1 must not exit).
func finish(then Then, logger *slog.Logger) {
	unix.Sync()
	var err error
	switch then {
	case ThenPowerOff:
		err = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case ThenReboot:
		err = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
	if err != nil {
		logger.Error("deploy environment: "+string(then), "err", err)
	}
	logger.Info("deploy environment: done; waiting (imagefarm.then=poweroff or reboot ends it)")
	for {
		time.Sleep(time.Hour)
	}
}

func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// uptime is how long ago the kernel started, from /proc/uptime.
func uptime() float64 {
	b, _ := os.ReadFile("/proc/uptime")
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}
