package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/imagefarm/imagefarm/controller/tokens"
	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Config is what the deploy environment knows when it starts.
type Config struct {
	// Conn is the connection to the controller (TLS verifying the
	// controller against the farm CA; no client certificate).
	Conn *grpc.ClientConn
	// Plaintext lets the device credential go over a connection without
	// TLS: for a lab on a trusted network, and tests.
	Plaintext bool
	// BootToken is imagefarm.token= from the kernel command line.
	BootToken string
	// BootMAC is the MAC of the interface the machine booted from.
	BootMAC string
	// MACs are every interface's MAC.
	MACs []string
	// Identity is what SMBIOS says the machine is.
	Identity *imagefarmv1.DeviceIdentity
	// Arch is the firmware architecture, for the record.
	Arch string
	// Drives is where the disks are found (drive.Discover). Its Allow is
	// set to the one disk the assignment names.
	Drives drive.Config
	// TrustedKeys are the keys an image must be signed by; nil writes
	// unsigned images (logged loudly), like imagefarm imager --allow-unsigned.
	TrustedKeys *catalog.KeyRing
	// USBPackages are the .ppkg files found on USB keys attached when the
	// deploy environment started; a reset keeps them.
	USBPackages []string
	// Scratch is where a reset keeps its temporary files (the WIM it
	// applies among them); os.TempDir() when "".
	Scratch string
	// HeartbeatInterval is how often the device says it is alive; 5s when 0.
	HeartbeatInterval time.Duration
	// Log is where Run logs; slog.Default() when nil.
	Log *slog.Logger
}

// Outcome is what Run did, and what the machine does next.
type Outcome struct {
	// Enrolled is the controller's answer to the enrollment.
	Enrolled *imagefarmv1.EnrollResponse
	// Result is how the task ended; nil without a task.
	Result *imagefarmv1.TaskResult
	// Then is what the machine does now: reboot (to its local disk, as
	// the farm has nothing more for it) or power off.
	Then imagefarmv1.AfterWrite
}

// Run enrolls the machine and runs its task, if it gets one, until the
// controller has recorded the result. It returns an error only when the
// machine could not enroll or its result could not be delivered.
func Run(ctx context.Context, cfg Config) (Outcome, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	found, err := drive.Discover(cfg.Drives)
	if err != nil {
		return Outcome{}, fmt.Errorf("deploy environment: find disks: %w", err)
	}
	var disks []*imagefarmv1.Drive
	for _, d := range found {
		disks = append(disks, imager.ProtoDrive("", d, cfg.Drives))
	}
	client := imagefarmv1.NewDeviceServiceClient(cfg.Conn)
	resp, err := client.Enroll(ctx, &imagefarmv1.EnrollRequest{BootToken: cfg.BootToken, BootMac: cfg.BootMAC, Macs: cfg.MACs,
		Identity: cfg.Identity, Disks: disks, Arch: cfg.Arch})
	if err != nil {
		return Outcome{}, fmt.Errorf("deploy environment: enroll: %w", err)
	}
	out := Outcome{Enrolled: resp, Then: imagefarmv1.AfterWrite_AFTER_WRITE_REBOOT}
	a := resp.GetAssignment()
	if a == nil {
		cfg.Log.Info("no work for this device", "reason", resp.GetReason())
		return out, nil
	}
	if a.GetOptions().GetAfterWrite() == imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF {
		out.Then = imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF
	}
	cred := grpc.PerRPCCredentials(tokens.Bearer{Secret: resp.GetCredential(), Plaintext: cfg.Plaintext})
	out.Result, err = runTask(ctx, cfg, client, cred, a, found)
	return out, err
}

// runTask writes the assignment's disk (or captures it, for a capture
// task) while a reporter streams its progress, and returns once the
// controller has the result.
func runTask(ctx context.Context, cfg Config, client imagefarmv1.DeviceServiceClient, cred grpc.CallOption,
	a *imagefarmv1.TaskAssignment, found []drive.Drive) (*imagefarmv1.TaskResult, error) {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	rep := newReporter(client, cred, cfg.HeartbeatInterval, cfg.Log, func(s *imagefarmv1.StopTask) {
		if s.GetTaskId() == a.GetTaskId() {
			cfg.Log.Warn("the controller stopped the task", "task_id", s.GetTaskId(), "reason", s.GetReason(), "message", s.GetMessage())
			stop()
		}
	})
	g, gctx := errgroup.WithContext(ctx)
	rctx, endReports := context.WithCancel(gctx)
	g.Go(func() error { return rep.run(rctx) })
	var res *imagefarmv1.TaskResult
	g.Go(func() error {
		defer endReports()
		if a.GetCapture() != nil {
			res = capture(wctx, client, cred, a, found, rep)
		} else {
			res = write(wctx, cfg, remoteStore{c: client, opts: []grpc.CallOption{cred}}, a, found, rep)
		}
		return rep.deliver(gctx, &imagefarmv1.ReportRequest{Body: &imagefarmv1.ReportRequest_TaskResult{TaskResult: res}})
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		err = nil // the reporter, ended once the result was delivered
	}
	return res, err
}

// write runs the imager's pipeline on the one disk the assignment names,
// after the deploy environment's own guard: never a removable or USB disk.
func write(ctx context.Context, cfg Config, st remoteStore, a *imagefarmv1.TaskAssignment, found []drive.Drive, rep *reporter) *imagefarmv1.TaskResult {
	for _, d := range found {
		if d.ID == a.GetDrive().GetId() && (d.Removable || d.Transport == drive.TransportUSB) {
			return &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
				Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY,
					Message: fmt.Sprintf("disk %s is removable or USB: the deploy environment writes only the device's internal disk", d.ID)}}
		}
	}
	if a.GetOptions().GetResetSpec() != nil { // a reset, never the WIM written over the disk as if it were a disk image
		return resetOn(ctx, cfg, st, a, found, rep)
	}
	cat, err := catalog.New(st, catalog.Options{})
	if err != nil {
		return &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
			Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, Message: err.Error()}}
	}
	if cfg.TrustedKeys == nil {
		cfg.Log.Warn("UNSIGNED IMAGES ALLOWED: this deploy environment writes images without checking who signed them")
	}
	w := imager.NewWriter(imager.WriterConfig{Catalog: cat, Trust: imager.Trust{Keys: cfg.TrustedKeys}, Log: cfg.Log})
	dcfg := cfg.Drives
	dcfg.Allow = []string{a.GetDrive().GetId()} // the internal disk the controller chose, and no other
	progress := func(_ int, phase imager.Phase, done, total int64) {
		if state, ok := imager.PhaseState(phase); ok {
			rep.progress(a, state, done, total)
		}
	}
	return w.RunTasks(ctx, a.GetManifestDigest(), []*imagefarmv1.TaskAssignment{a}, dcfg, progress, nil)[0]
}
