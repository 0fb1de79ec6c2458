package main

import (
	"strings"
	"testing"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// TestCaptureRequest: job capture's flags become the request, and what
// could never be captured is refused before the controller is asked,
// saying what to give.
func TestCaptureRequest(t *testing.T) {
	cf := captureFlags{device: "5CG1234XYZ", disk: "S4EW", then: "poweroff", labels: map[string]string{"ticket": "42"}}
	req, err := cf.request("hp-factory:1")
	if err != nil || req.GetDeviceSerial() != "5CG1234XYZ" || req.GetDiskSerial() != "S4EW" || req.GetImageRef() != "hp-factory:1" ||
		req.GetAfter() != imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF || req.GetLabels()["ticket"] != "42" {
		t.Fatalf("request = %v, %v", req, err)
	}
	for _, tc := range []struct {
		flags captureFlags
		ref   string
		says  string
	}{
		{captureFlags{then: "reboot"}, "hp:1", "--device: name the device"},
		{captureFlags{device: "5CG\x1b[2J", then: "reboot"}, "hp:1", "--device"},
		{captureFlags{device: "5CG", disk: "\x00", then: "reboot"}, "hp:1", "--disk"},
		{captureFlags{device: "5CG", then: "halt"}, "hp:1", "--then \"halt\": want reboot or poweroff"},
		{captureFlags{device: "5CG", then: "reboot"}, "../../etc:1", "NAME:VERSION"},
		{captureFlags{device: "5CG", then: "reboot"}, "", "NAME:VERSION"},
		{captureFlags{device: "5CG", then: "reboot"}, "hp", "NAME:VERSION"},
		{captureFlags{device: "5CG", then: "reboot"}, "hp@sha256:" + strings.Repeat("a", 64), "NAME:VERSION"},
	} {
		if _, err := tc.flags.request(tc.ref); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("request(%+v, %q) = %v, want an error saying %q", tc.flags, tc.ref, err, tc.says)
		}
	}
}
