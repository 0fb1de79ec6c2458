package controller_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
	"github.com/imagefarm/imagefarm/tests/testenv/farm"
)

// TestBootPlansAreAudited: every PlanBoot is an audit record by the boot
// service's token: a local boot and why, a deploy naming the job that
// wants the machine, and a malformed request refused.
func TestBootPlansAreAudited(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	l := newLaptop(t, 20, elitebook)
	planBoot(t, boot, l.mac)
	job, err := submitDevice(t, f, "img:1", deviceTargets(l.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	planBoot(t, boot, l.mac)
	_, err = boot.PlanBoot(t.Context(), &imagefarmv1.PlanBootRequest{Mac: "not-a-mac", Arch: "x86_64-efi"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("PlanBoot(not-a-mac) = %v, want InvalidArgument", err)
	}
	planned := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_PLANNED)
	if len(planned) != 2 {
		t.Fatalf("boot planned records %v, want two", planned)
	}
	for i, want := range []struct{ msg, job string }{{"local boot", ""}, {"deploy", job.GetId()}} {
		r := planned[i]
		if !strings.HasPrefix(r.GetMessage(), want.msg) || r.GetJobId() != want.job || r.GetMac() != l.mac || r.GetActor() != "user:netboot" {
			t.Errorf("boot planned record %d: %v, want %q, job %q, MAC %s, actor user:netboot", i, r, want.msg, want.job, l.mac)
		}
	}
	refused := records(t, f, imagefarmv1.AuditAction_AUDIT_ACTION_BOOT_PLAN_REFUSED)
	if len(refused) != 1 || refused[0].GetMac() != "not-a-mac" || !strings.Contains(refused[0].GetMessage(), "MAC") {
		t.Errorf("boot plan refused records %v, want one naming the MAC", refused)
	}
}

// TestDeviceJobsSayWhyTheyWait: a device order says how many devices of
// its model it waits for; a device list names a device the farm has never
// seen, and one it knows with when it was last seen; once every device is
// taken the reason goes.
func TestDeviceJobsSayWhyTheyWait(t *testing.T) {
	f := farm.Start(t, farm.Options{HeartbeatTTL: 5 * time.Second, PushImage: true})
	boot := bootService(t, f)
	seen, unseen := newLaptop(t, 21, elitebook), newLaptop(t, 22, elitebook)
	order, err := submitDevice(t, f, "img:1", orderTargets(elitebook, 2))
	if err != nil {
		t.Fatal(err)
	}
	waitReason(t, f, order.GetId(), fmt.Sprintf("waiting for 2 devices of model %q to netboot (0 of 2 taken)", elitebook))
	deployNow(t, f, boot, seen)
	waitReason(t, f, order.GetId(), fmt.Sprintf("waiting for a device of model %q to netboot (1 of 2 taken)", elitebook))
	resp, err := f.API.GetDevice(t.Context(), &imagefarmv1.GetDeviceRequest{Device: seen.id.GetSerial()})
	if err != nil {
		t.Fatal(err)
	}
	last := resp.GetDevice().GetLastSeenTime().AsTime().UTC().Format(time.RFC3339)
	list, err := submitDevice(t, f, "img:1", deviceTargets(unseen.id.GetSerial(), seen.id.GetSerial()))
	if err != nil {
		t.Fatal(err)
	}
	waitReason(t, f, list.GetId(), fmt.Sprintf("waiting for device %s to netboot (never seen); device %s to netboot (not seen since %s)",
		unseen.id.GetSerial(), seen.id.GetSerial(), last))
	deployNow(t, f, boot, seen)
	waitReason(t, f, list.GetId(), fmt.Sprintf("waiting for device %s to netboot (never seen)", unseen.id.GetSerial()))
	deployNow(t, f, boot, unseen) // the order is older: it takes unseen, and the list still wants it
	waitReason(t, f, order.GetId(), "")
}

// waitReason waits until job id's waiting reason is want.
func waitReason(t *testing.T, f *farm.Farm, id, want string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("job %s waiting for %q", id, want), func() bool {
		resp, err := f.API.GetJob(t.Context(), &imagefarmv1.GetJobRequest{JobId: id})
		return err == nil && resp.GetJob().GetWaitingReason() == want
	})
}
