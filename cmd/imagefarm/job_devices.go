package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/imagefarm/imagefarm/controller/devices"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// deviceFlags are the flags of imagefarm job submit that write netbooted
// devices' internal disks.
type deviceFlags struct {
	serials []string
	disk    string
	model   string
	then    string
}

func (df *deviceFlags) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&df.serials, "device", nil, "netbooted device to write, by its SMBIOS serial (repeatable); it is written when it next boots from the network")
	f.StringVar(&df.disk, "disk", "", "with one --device: the serial of its disk to write (default: its one internal disk; refused when it has several)")
	f.StringVar(&df.model, "model", "", "with --count: write that many netbooted devices of exactly this SMBIOS model as they boot from the network")
	f.StringVar(&df.then, "then", "reboot", "what a netbooted device does after its task: reboot (to its local disk) or poweroff")
}

// drivesOnly are the flags that select drives on imagers, not devices.
var drivesOnly = append([]string{"drive", "check-capacity"}, selectorFlags...)

// fill sets req's device targets and options when the flags ask for
// devices, leaving req.Targets nil when they do not.
func (df *deviceFlags) fill(changed func(string) bool, sf *submitFlags, req *imagefarmv1.SubmitJobRequest) error {
	deviceJob := len(df.serials) > 0 || changed("model")
	if !deviceJob {
		for _, name := range []string{"disk", "then"} {
			if changed(name) {
				return fmt.Errorf("--%s is for netbooted devices: give --device SERIAL or --model MODEL --count N", name)
			}
		}
		return nil
	}
	for _, name := range drivesOnly {
		if changed(name) {
			return fmt.Errorf("--%s is for drives on imagers; --device and --model write netbooted devices", name)
		}
	}
	then, err := afterWrite(df.then)
	if err != nil {
		return err
	}
	req.Options.AfterWrite = then
	switch {
	case len(df.serials) > 0 && changed("model"):
		return errors.New("--device and --model exclude each other: name the devices, or ask for a count of one model")
	case len(df.serials) > 0:
		return df.list(changed, req)
	case !changed("count"):
		return fmt.Errorf("--model %q: say how many devices with --count N", df.model)
	}
	if err := devices.CheckText("--model", df.model); err != nil || df.model == "" {
		return fmt.Errorf("--model %q: want the exact SMBIOS product name, as imagefarm devices ls shows it", df.model)
	}
	req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_DeviceOrder{DeviceOrder: &imagefarmv1.DeviceOrder{Model: df.model, Count: sf.count}}}
	return nil
}

// list fills a device list's targets.
func (df *deviceFlags) list(changed func(string) bool, req *imagefarmv1.SubmitJobRequest) error {
	if changed("count") {
		return errors.New("--device and --count exclude each other: each named device is written once")
	}
	if df.disk != "" && len(df.serials) > 1 {
		return errors.New("--disk names the disk of one device: give one --device with it")
	}
	l := &imagefarmv1.DeviceList{}
	for _, s := range df.serials {
		if err := devices.CheckText("--device", s); err != nil || s == "" {
			return fmt.Errorf("--device %q: want a device's SMBIOS serial, as imagefarm devices ls shows it", s)
		}
		l.Devices = append(l.Devices, &imagefarmv1.DeviceTarget{Serial: s, DiskSerial: df.disk})
	}
	req.Targets = &imagefarmv1.Targets{Kind: &imagefarmv1.Targets_Devices{Devices: l}}
	return nil
}

func afterWrite(s string) (imagefarmv1.AfterWrite, error) {
	switch s {
	case "reboot":
		return imagefarmv1.AfterWrite_AFTER_WRITE_REBOOT, nil
	case "poweroff":
		return imagefarmv1.AfterWrite_AFTER_WRITE_POWEROFF, nil
	}
	return 0, fmt.Errorf("--then %q: want reboot or poweroff", s)
}

// isDeviceJob reports whether j writes netbooted devices.
func isDeviceJob(j *imagefarmv1.Job) bool {
	return j.GetTargets().GetDevices() != nil || j.GetTargets().GetDeviceOrder() != nil
}

// deviceCount is how many devices a device job is to write.
func deviceCount(j *imagefarmv1.Job) int {
	if o := j.GetTargets().GetDeviceOrder(); o != nil {
		return int(o.GetCount())
	}
	return len(j.GetTargets().GetDevices().GetDevices())
}

// deviceTargetsText says which devices a device job writes.
func deviceTargetsText(j *imagefarmv1.Job) string {
	if o := j.GetTargets().GetDeviceOrder(); o != nil {
		return fmt.Sprintf("%s of model %q as they netboot", plural(int(o.GetCount()), "device"), o.GetModel())
	}
	return plural(deviceCount(j), "netbooted device")
}
