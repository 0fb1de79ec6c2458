package controller

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/imagefarm/imagefarm/controller/dispatch"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	"github.com/imagefarm/imagefarm/internal/ident"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Limits on requests, beside the scheduler's (scheduler.MaxCount,
// MaxLabels, MaxTextLen) and the store's (state.MaxIDLen). They keep one
// request from making the controller store, scan or echo back an absurd
// amount.
const (
	// maxRequestBytes is the largest message the gRPC server reads (its
	// MaxRecvMsgSize; grpc-go's default too, set so that it is a decision):
	// a larger one fails with ResourceExhausted before it is decoded. The
	// largest real message, the Hello of a node with a few hundred drives,
	// is well under a MiB.
	maxRequestBytes = 4 << 20
	// maxRefLen is the longest image ref a client may send, and the longest
	// image filter of ListJobs.
	maxRefLen = 256
	// maxRequestIDLen is the longest request id of a submit.
	maxRequestIDLen = 256
)

// checkSubmit refuses a submit whose own fields are out of bounds. Its
// targets are the scheduler's to check.
func checkSubmit(req *imagefarmv1.SubmitJobRequest) error {
	if err := checkLen("request id", req.GetRequestId(), maxRequestIDLen); err != nil {
		return err
	}
	if err := checkLabels("job", req.GetLabels()); err != nil {
		return err
	}
	if req.GetTargets().GetKind() == nil {
		return fmt.Errorf("targets: none given; name drives as NODE/DRIVE or give a selector with a count: %w", scheduler.ErrBadTargets)
	}
	return nil
}

// checkHello refuses a Hello before anything of it is stored: a node that
// could not be named in a subject or a selector, or a drive that could not
// be stored.
func checkHello(h *imagefarmv1.Hello) error {
	if err := dispatch.ValidateNodeID(h.GetNodeId()); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if err := checkText("hello: pool", h.GetPool()); err != nil {
		return err
	}
	if err := checkLabels("hello: node", h.GetLabels()); err != nil {
		return err
	}
	for _, d := range h.GetDrives() {
		if err := state.ValidDriveID(d.GetId()); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
	}
	return nil
}

// parseRef parses an image ref a client sent, bounded first so that a
// megabyte-long ref is not echoed back in the error.
func parseRef(s string) (catalog.Ref, error) {
	if err := checkLen("image ref", s, maxRefLen); err != nil {
		return catalog.Ref{}, err
	}
	return catalog.ParseRef(s)
}

// checkImageName refuses a name filter that is not an image name. A name
// is what a ref has before ":VERSION", so the ref parser says which are.
func checkImageName(name string) error {
	if name == "" {
		return nil
	}
	if err := checkLen("name", name, maxRefLen); err != nil {
		return err
	}
	if _, err := catalog.ParseRef(name + ":0"); err != nil {
		return fmt.Errorf("name %q is not an image name; give one as `imagefarm image ls` lists them, without a version: %w", name, catalog.ErrBadRef)
	}
	return nil
}

// checkLen refuses a field longer than limit bytes.
func checkLen(field, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s is %d bytes long, the limit is %d: %w", field, len(s), limit, errBadRequest)
	}
	return nil
}

// checkText refuses a pool name that a selector could not name.
func checkText(field, s string) error {
	if err := scheduler.CheckText(s); err != nil {
		return fmt.Errorf("%s %s %v: %w", field, ident.Quote(s), err, errBadRequest)
	}
	return nil
}

// checkLabels refuses the labels of a job or a node that a selector could
// not name, or too many of them.
func checkLabels(owner string, labels map[string]string) error {
	if err := scheduler.CheckLabels(labels); err != nil {
		return fmt.Errorf("%s labels: %v: %w", owner, err, errBadRequest)
	}
	return nil
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
