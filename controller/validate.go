package controller

import (
	"cmp"
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/imagefarm/imagefarm/controller/core"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// maxRequestBytes is the largest message the gRPC server reads (its
// MaxRecvMsgSize; grpc-go's default too, set so that it is a decision): a
// larger one fails with ResourceExhausted before it is decoded. The largest
// real message, the Hello of a node with a few hundred drives, is well under
// a MiB. Every name in a request is bounded by its internal/ident rule,
// beside the scheduler's limits (scheduler.MaxCount, MaxMinSize).
const maxRequestBytes = 4 << 20

// checkSubmit refuses a submit whose own fields break their rules. Its
// targets are the scheduler's to check.
func checkSubmit(req *imagefarmv1.SubmitJobRequest) error {
	if r := req.GetRequestId(); r != "" { // "": none, every submit is new
		if err := ident.RequestID(r); err != nil {
			return err
		}
	}
	if err := ident.Labels(req.GetLabels()); err != nil {
		return fmt.Errorf("job labels: %w", err)
	}
	if req.GetTargets().GetKind() == nil {
		return fmt.Errorf("targets: none given; name drives as NODE/DRIVE or give a selector with a count: %w", scheduler.ErrBadTargets)
	}
	return checkAfter(req.GetOptions().GetAfterWrite())
}

// checkAfter refuses an after-write value the enum does not have; unset
// is reboot.
func checkAfter(a imagefarmv1.AfterWrite) error {
	if a == imagefarmv1.AfterWrite_AFTER_WRITE_UNSPECIFIED {
		return nil
	}
	return checkEnums("after write", a)
}

// checkHello refuses a Hello before anything of it is stored: a node id,
// pool, label, drive id or slot label that breaks its internal/ident rule
// (the same rules the CLI, the farm CA, NATS subjects and the store use).
func checkHello(h *imagefarmv1.Hello) error {
	err := cmp.Or(ident.NodeID(h.GetNodeId()), ident.Pool(h.GetPool()), ident.Labels(h.GetLabels()))
	if strings.HasPrefix(h.GetNodeId(), deviceNodePrefix) {
		err = cmp.Or(err, fmt.Errorf("node id %q: ids starting with %q name netbooted devices; give the imager another: %w",
			h.GetNodeId(), deviceNodePrefix, errBadRequest))
	}
	for _, d := range h.GetDrives() {
		err = cmp.Or(err, ident.DriveID(d.GetId()), ident.SlotLabel(d.GetSlotLabel()), checkDriveState(d))
	}
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	return nil
}

// checkDriveState refuses a drive reported in a state no drive is stored
// in (core's driveReports: an imager reports AVAILABLE, BUSY or REFUSED).
func checkDriveState(d *imagefarmv1.Drive) error {
	if !core.Reportable(d.GetState()) {
		return fmt.Errorf("drive %s: state %v: an imager reports a drive AVAILABLE, BUSY or REFUSED: %w",
			ident.Quote(d.GetId()), d.GetState(), errBadRequest)
	}
	return nil
}

// parseRef parses an image ref a client sent: the catalog's parser, whose
// ident rules bound its length first, so that a megabyte-long ref is not
// echoed back in the error.
func parseRef(s string) (catalog.Ref, error) { return catalog.ParseRef(s) }

// checkImageName refuses a name filter that is not an image name ("" is
// no filter).
func checkImageName(name string) error {
	if name == "" {
		return nil
	}
	return ident.ImageName(name)
}

// checkImageFilter refuses a job filter that is not an image name, ref or
// digest ("" is no filter).
func checkImageFilter(image string) error {
	switch {
	case image == "" || ident.Digest(image) == nil:
		return nil
	case strings.ContainsAny(image, ":@"):
		return ident.Ref(image)
	}
	return ident.ImageName(image)
}

// checkEnums refuses enum values in a filter that are unset or unknown to
// this controller: they would match nothing, silently.
func checkEnums[E protoreflect.Enum](field string, values ...E) error {
	for _, v := range values {
		d := v.Descriptor()
		if v.Number() == 0 || d.Values().ByNumber(v.Number()) == nil {
			var names []string
			for i := 1; i < d.Values().Len(); i++ {
				names = append(names, string(d.Values().Get(i).Name()))
			}
			return fmt.Errorf("%s: %d is not one of %s: %w", field, v.Number(), strings.Join(names, ", "), errBadRequest)
		}
	}
	return nil
}
