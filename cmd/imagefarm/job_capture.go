package main

import (
	"fmt"
	"io"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// captureFlags are the flags of imagefarm job capture.
type captureFlags struct {
	device, disk, then string
	labels             map[string]string
	watch              bool
}

func newJobCaptureCmd(g *globals) *cobra.Command {
	var cf captureFlags
	cmd := &cobra.Command{
		Use:   "capture --device SERIAL [--disk SERIAL] [--then reboot|poweroff] NAME:VERSION",
		Short: "Capture a netbooted device's internal disk into the catalog as NAME:VERSION",
		Long: `Capture the internal disk of a device the farm knows (imagefarm devices ls) into the
catalog as a new version NAME:VERSION, tagged with the device's model so that it is
written only to devices of exactly that model. When the device next netboots, it reads
its disk (read-only) and uploads it through the controller: chunked, each chunk the
catalog already has skipped, zero chunks not stored. The controller signs it when it
has a signing key (imagefarm controller --sign-key); the job's result says so.
A version that exists, a device the farm has no record of, or one whose disk cannot be
chosen (several internal disks: name one with --disk) is refused, nothing created.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := cf.request(args[0])
			if err != nil {
				return err
			}
			c, err := dialController(g)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SubmitCapture(cmd.Context(), req)
			if err != nil {
				return err
			}
			job, w := resp.GetJob(), cmd.OutOrStdout()
			switch {
			case g.json && cf.watch:
				err = printProtoLine(w, job)
			case g.json:
				return printProto(w, job)
			default:
				fmt.Fprintf(w, "job %s submitted: capture device %s into %s\n", job.GetId(), cf.device, job.GetImageRef())
				if !cf.watch {
					fmt.Fprintf(w, "netboot the device; follow it with: imagefarm job watch %s\n", job.GetId())
				}
			}
			if err != nil || !cf.watch {
				return err
			}
			return watchJob(cmd, c, job.GetId(), g.json)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cf.device, "device", "", "SMBIOS serial of the device to capture, as imagefarm devices ls shows it (required)")
	f.StringVar(&cf.disk, "disk", "", "serial of the disk to read, when the device has several internal disks")
	f.StringVar(&cf.then, "then", "reboot", "what the device does once its capture is stored: reboot or poweroff")
	f.StringToStringVar(&cf.labels, "label-job", nil, "label key=value kept with the job, such as a ticket number (repeatable)")
	f.BoolVar(&cf.watch, "watch", false, "follow the job until it is final, as imagefarm job watch")
	f.BoolVar(&g.json, "json", false, "print the job as JSON; with --watch, the job and its events as JSON lines")
	return cmd
}

// request builds the SubmitCaptureRequest the flags describe.
func (cf *captureFlags) request(ref string) (*imagefarmv1.SubmitCaptureRequest, error) {
	if _, tag, _, err := ident.SplitRef(ref); err != nil || tag == "" {
		return nil, fmt.Errorf("%q: want the new image as NAME:VERSION, a version that does not exist yet", ref)
	}
	if cf.device == "" {
		return nil, fmt.Errorf("--device: name the device to capture by its SMBIOS serial, as imagefarm devices ls shows it")
	}
	if err := devices.CheckText("--device", cf.device); err != nil {
		return nil, err
	}
	if err := devices.CheckText("--disk", cf.disk); err != nil {
		return nil, err
	}
	then, err := afterWrite(cf.then)
	if err != nil {
		return nil, err
	}
	return &imagefarmv1.SubmitCaptureRequest{DeviceSerial: cf.device, DiskSerial: cf.disk, ImageRef: ref, After: then, Labels: cf.labels}, nil
}

// printCapture prints what a capture task stored, after the summary.
func printCapture(w io.Writer, t *imagefarmv1.Task) {
	c := t.GetCapture()
	if c == nil {
		return
	}
	signed := "signed by key " + c.GetSignedBy()
	if c.GetSignedBy() == "" {
		signed = "UNSIGNED: " + c.GetUnsignedReason()
	}
	fmt.Fprintf(w, "captured %s (%s) for model %q: %s read, %d chunks: %d sent, %d already stored, %d zero; %s stored; %s\n",
		c.GetImageRef(), c.GetDigest(), c.GetModel(), humanize.IBytes(c.GetBytesRead()), c.GetChunks(), c.GetChunksSent(),
		c.GetChunksDeduplicated(), c.GetZeroChunks(), humanize.IBytes(c.GetBytesStored()), signed)
}
