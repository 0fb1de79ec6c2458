package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/enroll"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// PlanBoot implements DeviceService.PlanBoot: a machine boots the deploy
// environment only when a job may want it; otherwise its local disk. Every
// decision, and every request refused, is an audit record.
func (c *deviceServer) PlanBoot(ctx context.Context, req *imagefarmv1.PlanBootRequest) (*imagefarmv1.PlanBootResponse, error) {
	resp, jobID, err := c.planBoot(ctx, req)
	rec := &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_PLANNED,
		DeviceId: resp.GetDeviceId(), Mac: auditMAC(req.GetMac()), JobId: jobID}
	if err != nil {
		rec.Action, rec.Message = imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_PLAN_REFUSED, fmt.Sprintf("arch %q: %v", cut(req.GetArch()), err)
		c.audit.Record(ctx, rec)
		return nil, toStatus(err)
	}
	rec.Message = fmt.Sprintf("%s, arch %q: %s", bootActionText(resp.GetAction()), req.GetArch(), resp.GetReason())
	c.audit.Record(ctx, rec)
	c.log.Info("boot planned", "mac", rec.Mac, "device_id", resp.GetDeviceId(), "job_id", jobID, "action", resp.GetAction(), "reason", resp.GetReason())
	return resp, nil
}

// planBoot decides a boot: the answer and the job that wants the machine
// ("" when it boots its local disk).
func (c *deviceServer) planBoot(ctx context.Context, req *imagefarmv1.PlanBootRequest) (*imagefarmv1.PlanBootResponse, string, error) {
	mac, err := devices.NormalizeMAC(req.GetMac())
	if err == nil {
		err = checkArch(req.GetArch())
	}
	if err != nil {
		return nil, "", err
	}
	dev, err := c.deviceByMAC(ctx, mac)
	if err != nil {
		return nil, "", err
	}
	w, err := c.bootWork(ctx, dev)
	if err != nil {
		return nil, "", err
	}
	resp := &imagefarmv1.PlanBootResponse{Action: imagefarmv1.BootAction_BOOT_ACTION_LOCAL_BOOT, Reason: w.why, DeviceId: dev.GetId()}
	if w.deploy {
		token, exp, err := c.dev.tokens.Issue(ctx, mac, dev.GetId())
		if err != nil {
			return nil, "", err
		}
		resp.Action, resp.BootToken, resp.ExpireTime = imagefarmv1.BootAction_BOOT_ACTION_DEPLOY, token, timestamppb.New(exp)
	}
	if dev != nil {
		c.touchDevice(ctx, dev.GetId(), req.GetArch(), w.deploy)
		c.kickRollouts() // a first-article device booting back passes
	}
	return resp, w.jobID, nil
}

// bootActionText names a boot action in an audit message.
func bootActionText(a imagefarmv1.BootAction) string {
	if a == imagefarmv1.BootAction_BOOT_ACTION_DEPLOY {
		return "deploy"
	}
	return "local boot"
}

// auditMAC is the MAC an audit record names: normalized, or the request's
// text cut short when it is not one.
func auditMAC(s string) string {
	if m, err := devices.NormalizeMAC(s); err == nil {
		return m
	}
	return cut(s)
}

// cut shortens what a record quotes back from a request.
func cut(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// checkArch bounds the architecture a boot service reports.
func checkArch(arch string) error {
	if len(arch) > 32 {
		return fmt.Errorf("arch: %d bytes, at most 32 (such as x86_64-efi): %w", len(arch), errBadRequest)
	}
	return devices.CheckText("arch", arch)
}

// deviceByMAC is the device last enrolled with mac, nil if none.
func (c *deviceServer) deviceByMAC(ctx context.Context, mac string) (*imagefarmv1.Device, error) {
	found, err := c.dev.records.Find(ctx, mac)
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return slices.MaxFunc(found, func(a, b *imagefarmv1.Device) int {
		return a.GetLastSeenTime().AsTime().Compare(b.GetLastSeenTime().AsTime())
	}), nil
}

// bootDecision is what bootWork decided.
type bootDecision struct {
	why    string
	deploy bool
	jobID  string // the job that wants the machine, when it deploys
}

// bootWork says whether a machine (dev, or nil for one the farm does not
// know) should boot the deploy environment, for which job, and why or why
// not. A known device boots it when a job wants it or its last task was
// cut short; an unknown machine when any device job has room, since it is
// known only once it enrolls.
func (c *deviceServer) bootWork(ctx context.Context, dev *imagefarmv1.Device) (bootDecision, error) {
	if dev.GetState() == imagefarmv1.DeviceState_DEVICE_STATE_IMAGING {
		return bootDecision{fmt.Sprintf("its task %s was cut short: its disk may be half written", dev.GetTaskId()), true, core.JobOf(dev.GetTaskId())}, nil
	}
	jobs, err := c.openDeviceJobs(ctx)
	if err != nil {
		return bootDecision{}, err
	}
	if dev == nil {
		for _, dj := range jobs {
			if dj.room() {
				return bootDecision{fmt.Sprintf("an unknown machine, and job %s may want it: it enrolls to say what it is", dj.job.GetId()), true, dj.job.GetId()}, nil
			}
		}
		return bootDecision{why: "an unknown machine, and no device job has room: it boots its local disk"}, nil
	}
	for _, dj := range jobs {
		if ok, _ := dj.wants(dev); ok {
			return bootDecision{fmt.Sprintf("job %s wants device %s", dj.job.GetId(), dev.GetSerial()), true, dj.job.GetId()}, nil
		}
	}
	return bootDecision{why: fmt.Sprintf("no job wants device %s (%s): it boots its local disk", dev.GetSerial(), dev.GetModel())}, nil
}

// touchDevice records that a known device asked to boot.
func (c *deviceServer) touchDevice(ctx context.Context, id, arch string, deploy bool) {
	_, err := c.updateDevice(ctx, id, func(d *imagefarmv1.Device) error {
		d.LastSeenTime, d.LastBootTime, d.Arch = now(), now(), cmp.Or(arch, d.Arch)
		if deploy && d.State == imagefarmv1.DeviceState_DEVICE_STATE_IDLE {
			d.State = imagefarmv1.DeviceState_DEVICE_STATE_BOOTING
		}
		return nil
	})
	if err != nil {
		c.log.Warn("record device boot", "device_id", id, "error", err)
	}
}

// Enroll implements DeviceService.Enroll. The request is checked before
// the token is redeemed, so a malformed one does not use the token up.
func (c *deviceServer) Enroll(ctx context.Context, req *imagefarmv1.EnrollRequest) (*imagefarmv1.EnrollResponse, error) {
	in, err := checkEnroll(req)
	if err != nil {
		return nil, toStatus(err)
	}
	id := devices.ID(req.GetIdentity())
	if _, err := c.dev.tokens.Redeem(ctx, req.GetBootToken(), in.bootMAC); err != nil {
		if errors.Is(err, enroll.ErrRefused) {
			c.refuseToken(ctx, id, in.bootMAC, req.GetIdentity(), err)
			err = fmt.Errorf("%w: reboot the device from the network for a new one", err)
		}
		return nil, toStatus(err)
	}
	c.heard(id)
	dev, err := c.enrollDevice(ctx, id, req, in)
	if err != nil {
		return nil, toStatus(err)
	}
	cred, exp, err := c.dev.creds.Issue(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	a, why, err := c.placeDevice(ctx, dev)
	if err != nil {
		return nil, toStatus(err)
	}
	if a != nil {
		dev, _ = c.dev.records.Get(ctx, id)
	}
	c.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: deviceActor(id), Action: imagefarmv1.AuditAction_AUDIT_ACTION_DEVICE_ENROLL,
		DeviceId: id, Mac: in.bootMAC, JobId: a.GetJobId(), TaskId: a.GetTaskId(), NodeId: a.GetNodeId(),
		DriveId: a.GetDrive().GetId(), DriveSerial: a.GetDrive().GetSerial(), SizeBytes: a.GetDrive().GetSizeBytes(),
		ImageRef: a.GetImageRef(), ImageDigest: a.GetManifestDigest(),
		Message: fmt.Sprintf("serial %q, model %q: %s", dev.GetSerial(), dev.GetModel(), why)})
	c.log.Info("device enrolled", "device_id", id, "serial", dev.GetSerial(), "model", dev.GetModel(), "task_id", a.GetTaskId(), "reason", why)
	return &imagefarmv1.EnrollResponse{Device: dev, Credential: cred, CredentialExpireTime: timestamppb.New(exp), Assignment: a, Reason: why}, nil
}

// deviceActor is the audit actor of what a device did or reported.
func deviceActor(id string) string { return "device:" + id }

// refuseToken audits a refused boot token.
func (c *deviceServer) refuseToken(ctx context.Context, id, mac string, who *imagefarmv1.DeviceIdentity, err error) {
	c.log.Warn("boot token refused", "device_id", id, "mac", mac, "peer", peerAddr(ctx), "error", err)
	c.audit.Record(ctx, &imagefarmv1.AuditRecord{Actor: actor(ctx), Action: imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_TOKEN_REFUSED,
		DeviceId: id, Mac: mac, Message: fmt.Sprintf("serial %q, model %q: %v", who.GetSerial(), who.GetModel(), err)})
}

// enrollment is an enroll request's normalized fields.
type enrollment struct {
	bootMAC string
	macs    []string
}

// checkEnroll refuses a malformed enrollment before its token is spent.
func checkEnroll(req *imagefarmv1.EnrollRequest) (enrollment, error) {
	var in enrollment
	if req.GetBootToken() == "" {
		return in, fmt.Errorf("no boot token: the deploy environment reads it from imagefarm.token= on the kernel command line: %w", errBadRequest)
	}
	if len(req.GetBootToken()) > 128 {
		return in, fmt.Errorf("boot token: %d bytes, longer than any the controller issues: %w", len(req.GetBootToken()), errBadRequest)
	}
	var err error
	if in.bootMAC, err = devices.NormalizeMAC(req.GetBootMac()); err != nil {
		return in, fmt.Errorf("boot MAC: %w", err)
	}
	if in.macs, err = devices.NormalizeMACs(append([]string{req.GetBootMac()}, req.GetMacs()...)); err != nil {
		return in, err
	}
	if err := cmp.Or(devices.CheckIdentity(req.GetIdentity()), checkArch(req.GetArch())); err != nil {
		return in, err
	}
	if len(req.GetDisks()) > devices.MaxDisks {
		return in, fmt.Errorf("%d disks: at most %d: %w", len(req.GetDisks()), devices.MaxDisks, errBadRequest)
	}
	for _, d := range req.GetDisks() {
		err := cmp.Or(ident.DriveID(d.GetId()), devices.CheckText("disk serial", d.GetSerial()), devices.CheckText("disk model", d.GetModel()),
			devices.CheckText("disk vendor", d.GetVendor()))
		if err != nil {
			return in, fmt.Errorf("disk: %w", err)
		}
	}
	return in, nil
}

// enrollDevice records what an enrolling device says it is, and takes its
// MACs from any device that had them (a USB network adapter moved from
// one laptop to another).
func (c *deviceServer) enrollDevice(ctx context.Context, id string, req *imagefarmv1.EnrollRequest, in enrollment) (*imagefarmv1.Device, error) {
	idy := req.GetIdentity()
	dev, err := core.ApplyDevice(id, func(fn func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error) {
		return c.dev.records.Update(ctx, id, fn)
	}, func(d *imagefarmv1.Device) error {
		if d.State == imagefarmv1.DeviceState_DEVICE_STATE_UNSPECIFIED {
			d.State = imagefarmv1.DeviceState_DEVICE_STATE_IDLE // its first enrollment
		}
		d.SmbiosUuid, d.Serial, d.Vendor, d.Model = idy.GetUuid(), idy.GetSerial(), idy.GetVendor(), idy.GetModel()
		d.Macs, d.Disks, d.Arch, d.LastSeenTime = in.macs, req.GetDisks(), cmp.Or(req.GetArch(), d.Arch), now()
		if d.EnrollTime == nil {
			d.EnrollTime = now()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, mac := range in.macs {
		others, err := c.dev.records.Find(ctx, mac)
		if err != nil {
			return nil, err
		}
		for _, o := range others {
			if o.GetId() != id {
				c.updateDevice(ctx, o.GetId(), func(d *imagefarmv1.Device) error {
					d.Macs = slices.DeleteFunc(d.Macs, func(m string) bool { return m == mac })
					return nil
				})
			}
		}
	}
	return dev, nil
}
