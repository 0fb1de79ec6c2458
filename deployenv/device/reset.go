package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/imagefarm/imagefarm/deployenv/reset"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// stateChunk is how many bytes each PutResetState message carries.
const stateChunk = 1 << 20

// controllerState is the reset engine's StateStore kept by the controller
// (DeviceService.PutResetState): it survives a power cut that loses the
// deploy environment's RAM, and the device's next reset task finds it.
type controllerState struct {
	c      imagefarmv1.DeviceServiceClient
	opts   []grpc.CallOption
	taskID string
}

var _ reset.StateStore = controllerState{}

// Get implements reset.StateStore.
func (s controllerState) Get(ctx context.Context, name string) ([]byte, error) {
	stream, err := s.c.GetResetState(ctx, &imagefarmv1.GetResetStateRequest{TaskId: s.taskID, Name: name}, s.opts...)
	if err != nil {
		return nil, stateErr(name, err)
	}
	var buf bytes.Buffer
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, stateErr(name, err)
		}
		buf.Write(m.GetData())
	}
}

// Put implements reset.StateStore: it returns once the controller has
// stored all of data.
func (s controllerState) Put(ctx context.Context, name string, data []byte) error {
	stream, err := s.c.PutResetState(ctx, s.opts...)
	if err != nil {
		return stateErr(name, err)
	}
	for off := 0; off == 0 || off < len(data); off += stateChunk {
		m := &imagefarmv1.PutResetStateRequest{Data: data[off:min(off+stateChunk, len(data))]}
		if off == 0 {
			m.TaskId, m.Name = s.taskID, name
		}
		if err := stream.Send(m); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return stateErr(name, err)
	}
	if resp.GetSizeBytes() != uint64(len(data)) {
		return fmt.Errorf("save reset state %s: the controller stored %d of %d bytes", name, resp.GetSizeBytes(), len(data))
	}
	return nil
}

func stateErr(name string, err error) error {
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("reset state %s: %w", name, fs.ErrNotExist)
	}
	return fmt.Errorf("reset state %s: %w", name, err)
}

// stepStates is how each step of a reset shows as a task state.
var stepStates = map[reset.Step]imagefarmv1.TaskState{
	reset.StepPreflight: imagefarmv1.TaskState_TASK_STATE_FETCHING,
	reset.StepKeep:      imagefarmv1.TaskState_TASK_STATE_FETCHING,
	reset.StepFormat:    imagefarmv1.TaskState_TASK_STATE_WRITING,
	reset.StepApply:     imagefarmv1.TaskState_TASK_STATE_WRITING,
	reset.StepRestore:   imagefarmv1.TaskState_TASK_STATE_WRITING,
	reset.StepStage:     imagefarmv1.TaskState_TASK_STATE_WRITING,
	reset.StepVerify:    imagefarmv1.TaskState_TASK_STATE_VERIFYING,
}

// resetOn runs a reset on the disk the assignment names, by its id.
func resetOn(ctx context.Context, cfg Config, st remoteStore, a *imagefarmv1.TaskAssignment, found []drive.Drive, rep *reporter) *imagefarmv1.TaskResult {
	for _, d := range found {
		if d.ID == a.GetDrive().GetId() {
			return resetDisk(ctx, cfg, st, a, d.Path, rep)
		}
	}
	return &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED,
		Failure: &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_IDENTITY_CHANGED,
			Message: fmt.Sprintf("disk %s is not in this device: nothing was written", a.GetDrive().GetId())}}
}

// resetDisk runs a reset assignment through the reset engine on the one
// disk it names: the WIM is fetched through the controller's read path
// (its signature checked as for a write, every chunk verified), the
// keep-list is saved to the controller before the Windows volume is
// re-created, and the result carries the keep-list with its hashes.
func resetDisk(ctx context.Context, cfg Config, st remoteStore, a *imagefarmv1.TaskAssignment, disk string, rep *reporter) *imagefarmv1.TaskResult {
	start := time.Now()
	res := &imagefarmv1.TaskResult{TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: imagefarmv1.TaskState_TASK_STATE_FAILED}
	spec := a.GetOptions().GetResetSpec()
	if spec.GetDriverBundleDigest() != "" {
		res.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_NOT_SUPPORTED,
			Message: "this deploy environment does not stage driver bundles on a reset yet: nothing was written"}
		return res
	}
	scratch, err := os.MkdirTemp(cfg.Scratch, "imagefarm-reset-")
	if err != nil {
		res.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, Message: err.Error()}
		return res
	}
	defer os.RemoveAll(scratch)
	report := &imagefarmv1.ResetReport{}
	progress := func(s reset.Step) {
		report.Steps = append(report.Steps, string(s))
		cfg.Log.Info("reset step", "task_id", a.GetTaskId(), "step", s)
		if state, ok := stepStates[s]; ok { // progress counts steps: 4 of 7 is applying
			rep.add(&imagefarmv1.ReportRequest{Body: &imagefarmv1.ReportRequest_TaskProgress{TaskProgress: &imagefarmv1.TaskProgress{
				TaskId: a.GetTaskId(), Epoch: a.GetEpoch(), State: state,
				BytesDone: uint64(slices.Index(reset.Steps, s) + 1), BytesTotal: uint64(len(reset.Steps))}}})
		}
	}
	wim := filepath.Join(scratch, "image.wim")
	if err := fetchWIM(ctx, cfg, st, a.GetManifestDigest(), wim); err != nil {
		res.Failure = &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_STORAGE_UNAVAILABLE, Message: err.Error()}
		var fe *fetchError
		if errors.As(err, &fe) {
			res.Failure.Reason = fe.reason
		}
		return res
	}
	plan := reset.Plan{Disk: disk, Image: wim, Index: int(spec.GetWimIndex()), Keep: spec.GetKeepPaths(), Refresh: spec.GetRefresh(),
		USBPackages: cfg.USBPackages, Scratch: scratch,
		State: controllerState{c: st.c, opts: st.opts, taskID: a.GetTaskId()}}
	out, err := reset.Run(ctx, plan, progress)
	res.Duration = durationpb.New(time.Since(start))
	if err != nil {
		res.Failure = resetFailure(err)
		if ctx.Err() != nil {
			res.State = imagefarmv1.TaskState_TASK_STATE_CANCELED
		}
		return res
	}
	for _, k := range out.Kept {
		report.Kept = append(report.Kept, &imagefarmv1.KeptFile{Path: k.Path, SizeBytes: uint64(k.Size), Sha256Before: k.Before, Sha256After: k.After})
	}
	report.ProfilesRemoved = true // verify checked the old profiles gone
	res.State, res.VerifiedDigest, res.ResetReport = imagefarmv1.TaskState_TASK_STATE_DONE, a.GetManifestDigest(), report
	return res
}

// resetFailure is the task failure of a reset the engine refused or that
// failed.
func resetFailure(err error) *imagefarmv1.Failure {
	reason := imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL
	switch {
	case errors.Is(err, reset.ErrNotSupported):
		reason = imagefarmv1.FailureReason_FAILURE_REASON_NOT_SUPPORTED
	case errors.Is(err, reset.ErrHybridJoined):
		reason = imagefarmv1.FailureReason_FAILURE_REASON_GUARD_HYBRID_JOINED
	case errors.Is(err, reset.ErrBadInput), errors.Is(err, reset.ErrVolume), errors.Is(err, reset.ErrLayout):
		reason = imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY
	case errors.Is(err, reset.ErrVerify):
		reason = imagefarmv1.FailureReason_FAILURE_REASON_VERIFY_MISMATCH
	}
	return &imagefarmv1.Failure{Reason: reason, Message: err.Error()}
}

// fetchError is a WIM the device refuses to apply.
type fetchError struct {
	reason imagefarmv1.FailureReason
	err    error
}

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// fetchWIM pulls the job's WIM through the controller's read path into
// path, after checking its signature against the trusted keys (when the
// deploy environment has them), every chunk verified as it arrives.
func fetchWIM(ctx context.Context, cfg Config, st remoteStore, digest, path string) error {
	cat, err := catalog.New(st, catalog.Options{})
	if err != nil {
		return err
	}
	m, err := cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return fmt.Errorf("read the WIM's manifest: %w", err)
	}
	if m.Kind != catalog.KindWIM {
		return &fetchError{reason: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY,
			err: fmt.Errorf("image %s:%s is a %s, not a WIM: nothing was written", m.Name, m.Version, m.Kind)}
	}
	if cfg.TrustedKeys == nil {
		cfg.Log.Warn("UNSIGNED IMAGES ALLOWED: this deploy environment applies WIMs without checking who signed them")
	} else if _, err := cat.Verify(ctx, m, digest, cfg.TrustedKeys); err != nil {
		return &fetchError{reason: imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID, err: fmt.Errorf("the WIM's signature: %w", err)}
	}
	if err := cat.PullFile(ctx, m, path, nil); err != nil {
		return fmt.Errorf("fetch the WIM: %w", err)
	}
	return nil
}
