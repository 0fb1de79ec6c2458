package initproc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imagefarm/imagefarm/deployenv"
	"github.com/imagefarm/imagefarm/deployenv/device"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/pki"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// FarmCA is where the deploy environment finds the farm CA's certificate,
// which it verifies the controller against (build-env --ca).
const FarmCA = "/" + deployenv.CAFile

// TrustedKeys is where the deploy environment finds the public keys every
// image it writes must be signed by (build-env --trusted-keys).
const TrustedKeys = "/" + deployenv.TrustedKeysFile

// UnsignedWarning is the warning an environment built without trusted
// keys gives in its Deploy line and log.
const UnsignedWarning = "UNSIGNED IMAGES ALLOWED: this deploy environment holds no trusted keys (build-env --trusted-keys) and writes images without checking who signed them"

// DeployPrefix starts the console line that carries the Deploy result.
const DeployPrefix = "IMAGEFARM-DEPLOY "

// Deploy is what came of joining the farm, printed on the console as
// DeployPrefix and one line of JSON after the Report.
type Deploy struct {
	DeviceID string `json:"device_id,omitempty"`
	// Reason is the controller's word on the enrollment: the job that
	// wants the device, or why none does.
	Reason string `json:"reason,omitempty"`
	JobID  string `json:"job_id,omitempty"`
	TaskID string `json:"task_id,omitempty"`
	Disk   string `json:"disk,omitempty"`
	Digest string `json:"manifest_digest,omitempty"`
	// Captured is the image a capture task stored (Digest is its digest).
	Captured string  `json:"captured,omitempty"`
	State    string  `json:"state,omitempty"` // the task's end: TASK_STATE_DONE, TASK_STATE_FAILED
	Failure  string  `json:"failure,omitempty"`
	Seconds  float64 `json:"seconds"`
	Then     Then    `json:"then"`
	Error    string  `json:"error,omitempty"`
	// Warnings say what this environment does that is not safe:
	// UnsignedWarning.
	Warnings []string `json:"warnings,omitempty"`
}

// deploy enrolls the device with the boot token and writes its disk, if
// the controller assigns it one (device.Run), and says what the machine
// does next: the assignment's after-write, or reboot without one (to the
// local disk, as the farm has nothing for it). When it could not enroll
// or deliver its result, the machine does what imagefarm.then says, or
// reboots (and netboots again for a new token).
func deploy(ctx context.Context, p Params, rep Report, m machine, logger *slog.Logger) Deploy {
	d := Deploy{Then: ThenReboot}
	if p.Then != ThenWait {
		d.Then = p.Then
	}
	keys, err := loadTrustedKeys(m.keys)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	if keys == nil {
		d.Warnings = append(d.Warnings, UnsignedWarning) // device.Run logs it as it writes
	}
	conn, err := dialController(p, m.ca)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	defer conn.Close()
	bootMAC := p.BootMAC
	if bootMAC == "" && rep.Lease != nil {
		bootMAC = rep.Lease.MAC
	}
	var macs []string
	for _, n := range rep.NICs {
		macs = append(macs, n.MAC)
	}
	out, err := device.Run(ctx, device.Config{Conn: conn, Plaintext: p.Insecure, BootToken: p.Token, BootMAC: bootMAC, MACs: macs,
		Identity: &imagefarmv1.DeviceIdentity{Uuid: rep.UUID, Serial: rep.Serial, Vendor: rep.Vendor, Model: rep.Product},
		Arch:     firmwareArch(), Drives: m.drives, TrustedKeys: keys, Log: logger})
	a := out.Enrolled.GetAssignment()
	d.DeviceID, d.Reason = out.Enrolled.GetDevice().GetId(), out.Enrolled.GetReason()
	d.JobID, d.TaskID, d.Disk, d.Digest = a.GetJobId(), a.GetTaskId(), a.GetDrive().GetId(), a.GetManifestDigest()
	d.State, d.Failure = out.Result.GetState().String(), out.Result.GetFailure().GetMessage()
	if c := out.Result.GetCapture(); c != nil {
		d.Digest, d.Captured = c.GetDigest(), c.GetImageRef()
	}
	if out.Result == nil {
		d.State = ""
	}
	if err != nil {
		d.Error = err.Error()
		return d
	}
	d.Then = ThenReboot
	if out.Then == imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF {
		d.Then = ThenPowerOff
	}
	return d
}

// machine is where the deploy environment finds the disks, the farm CA
// and the trusted keys.
type machine struct {
	drives drive.Config
	ca     string
	keys   string
}

// thisMachine is the machine /init runs on.
var thisMachine = machine{drives: drive.Config{SysRoot: "/sys"}, ca: FarmCA, keys: TrustedKeys}

// loadTrustedKeys reads the keys images must be signed by from file; nil
// when the environment has none. Keys it cannot read stop the deploy: an
// environment built to check signatures never writes without checking.
func loadTrustedKeys(file string) (*catalog.KeyRing, error) {
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	ring, err := catalog.LoadKeyRing(file)
	if err != nil {
		return nil, fmt.Errorf("the deploy environment's %w: rebuild it with build-env --trusted-keys", err)
	}
	return ring, nil
}

// dialController connects to p.Controller: over TLS verified against the
// farm CA in file ca, or in plaintext with imagefarm.insecure=1.
func dialController(p Params, ca string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if !p.Insecure {
		if _, err := os.Stat(ca); err != nil {
			return nil, fmt.Errorf("controller %s: no farm CA in the deploy environment (%s) to verify it against: "+
				"build the environment with the farm CA, or give imagefarm.insecure=1 (netboot serve --insecure) on a trusted lab network", p.Controller, ca)
		}
		cfg, err := pki.ClientConfig(ca, "", "")
		if err != nil {
			return nil, fmt.Errorf("controller %s: %w", p.Controller, err)
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(p.Controller, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", p.Controller, err)
	}
	return conn, nil
}

// firmwareArch is the firmware the machine booted with, for the record.
func firmwareArch() string {
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		return "x86_64-efi"
	}
	return "bios"
}
