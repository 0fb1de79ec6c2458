package imager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/gpt"
)

// RunTasks runs assignments that write one image (all with the same
// manifest digest) on this node, as one fan-out: the image is decompressed
// once for all their drives. Each assignment's drive is found by its id and
// must still have the serial, size and model it was planned with; then the
// guards run and the drive is opened exclusively. progress, if set, gets
// the write's progress of each task; done, if set, gets each task's result
// as soon as it is final, so that a refused or failed drive is reported
// without waiting for the others. Both are called from several goroutines.
// RunTasks returns one result per assignment, in order, each with the
// task's epoch.
func (w *Writer) RunTasks(ctx context.Context, digest string, tasks []*imagefarmv1.TaskAssignment, cfg drive.Config,
	progress func(task int, phase Phase, done, total int64), done func(task int, res *imagefarmv1.TaskResult)) []*imagefarmv1.TaskResult {
	start := time.Now()
	results := make([]*imagefarmv1.TaskResult, len(tasks))
	finish := func(i int, r Result) {
		results[i] = taskResult(tasks[i], start, r)
		if done != nil {
			done(i, results[i])
		}
	}
	err := w.recoverCache()
	var m *catalog.Manifest
	if err == nil {
		m, err = w.cat.ManifestByDigest(ctx, digest)
	}
	if err == nil && len(tasks) > 0 { // before any chunk is fetched or drive opened
		err = w.admit(ctx, m, digest, tasks[0].GetImageRef())
	}
	if err != nil {
		for i := range tasks {
			finish(i, Result{Phase: PhaseFailed, Err: err})
		}
		return results
	}
	plans := planTasks(tasks, m.Size, cfg)
	targets, closeAll := Open(plans, cfg, w.log)
	defer closeAll()
	index := map[string]int{} // drive id -> index in targets
	for i, t := range targets {
		index[t.ID] = i
	}
	var opts WriteOptions
	if len(tasks) > 0 { // a batch is one job's: its tasks share the options
		opts.Discard = tasks[0].GetOptions().GetDiscard()
		opts.CheckCapacity = tasks[0].GetOptions().GetCheckCapacity()
		opts.Partitions = gpt.Select(tasks[0].GetOptions().GetPartitions(), tasks[0].GetOptions().GetKeepPartitions())
	}
	byTarget := make([]int, len(targets)) // target index -> task index
	for i, p := range plans {
		if j, ok := index[p.Drive.ID]; ok && p.Refused == "" {
			byTarget[j] = i
		} else {
			finish(i, Result{Phase: PhaseFailed, Err: refusal(p)})
		}
	}
	if progress != nil {
		opts.Progress = func(t int, phase Phase, done, total int64) { progress(byTarget[t], phase, done, total) }
	}
	opts.Done = func(t int, r Result) {
		// Its write is over: release the drive now, not when the whole
		// batch is, so that another task can have it.
		targets[t].Dev.Close()
		finish(byTarget[t], r)
	}
	w.Write(ctx, m, digest, targets, opts)
	return results
}

// planTasks finds each task's drive and plans it against the identity the
// controller planned: a drive that is gone or swapped is refused.
func planTasks(tasks []*imagefarmv1.TaskAssignment, imageSize int64, cfg drive.Config) []Plan {
	drives, err := drive.Discover(cfg)
	plans := make([]Plan, len(tasks))
	for i, t := range tasks {
		id := t.GetDrive()
		d, ferr := drive.Find(drives, id.GetId())
		switch {
		case err != nil:
			plans[i] = Plan{Drive: drive.Drive{ID: id.GetId()}, Refused: fmt.Sprintf("discover drives: %v", err)}
		case ferr != nil:
			plans[i] = Plan{Drive: drive.Drive{ID: id.GetId()}, Refused: fmt.Sprintf("drive %s is gone: %v", id.GetId(), drive.ErrNotFound)}
		default:
			// Plan as the controller saw it, so that Open's re-check
			// refuses a drive swapped since.
			d.Serial, d.Size, d.Model = id.GetSerial(), int64(id.GetSizeBytes()), id.GetModel()
			plans[i] = NewPlan(d, imageSize, cfg)
		}
		plans[i].Task = t.GetTaskId()
	}
	return plans
}

// refusedError carries a plan's refusal so that failure can classify it.
type refusedError struct{ p Plan }

func (e refusedError) Error() string { return e.p.Refused }

func refusal(p Plan) error { return refusedError{p} }

func taskResult(t *imagefarmv1.TaskAssignment, start time.Time, r Result) *imagefarmv1.TaskResult {
	res := &imagefarmv1.TaskResult{
		TaskId:       t.GetTaskId(),
		Epoch:        t.GetEpoch(),
		BytesWritten: uint64(r.BytesWritten),
		Duration:     durationpb.New(time.Since(start)),
		FinishTime:   timestamppb.Now(),
	}
	switch r.Phase {
	case PhaseVerified:
		res.State, res.VerifiedDigest = imagefarmv1.TaskState_TASK_STATE_DONE, r.VerifiedDigest
	case PhaseCanceled:
		res.State = imagefarmv1.TaskState_TASK_STATE_CANCELED
	default:
		res.State, res.Failure = imagefarmv1.TaskState_TASK_STATE_FAILED, failure(r.Err)
	}
	return res
}

// failure names why a task failed, for the controller and the technician.
func failure(err error) *imagefarmv1.Failure {
	f := &imagefarmv1.Failure{Reason: imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, Message: fmt.Sprint(err)}
	var mm *MismatchError
	var ce *catalog.ChunkError
	var re refusedError
	var ioe *IOError
	var fake *CapacityError
	switch {
	case errors.As(err, &mm):
		f.Reason, f.Offset = imagefarmv1.FailureReason_FAILURE_REASON_VERIFY_MISMATCH, ptr(uint64(mm.Offset))
	case errors.As(err, &ce):
		f.Offset, f.ChunkId = ptr(uint64(ce.Offset)), ce.ID
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_STORAGE_UNAVAILABLE
		if errors.Is(err, catalog.ErrCorruptChunk) {
			f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT
		}
	case errors.Is(err, catalog.ErrStorageUnavailable): // the manifest, before any chunk
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_STORAGE_UNAVAILABLE
	case errors.Is(err, catalog.ErrSignatureMissing):
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_MISSING
	case errors.Is(err, catalog.ErrSignatureInvalid):
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID
	case errors.Is(err, ErrRollback):
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_ROLLBACK
	case errors.Is(err, catalog.ErrNotFound):
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND
	case IsLayoutError(err):
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_PARTITION_MISMATCH
	case errors.As(err, &fake): // offset: the first byte found not to hold
		f.Reason, f.Offset = imagefarmv1.FailureReason_FAILURE_REASON_FAKE_CAPACITY, ptr(uint64(max(fake.Usable, 0)))
	case errors.As(err, &re):
		f.Reason = guardReason(re.p)
	case errors.As(err, &ioe):
		f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_IO_ERROR
		if ioe.Offset >= 0 {
			f.Offset = ptr(uint64(ioe.Offset))
		}
		var removed *RemovedError
		if errors.As(err, &removed) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			f.Reason = imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_REMOVED
		}
	}
	return f
}

// guardReason classifies a refused plan by its first failed guard, or by
// the error Open met.
func guardReason(p Plan) imagefarmv1.FailureReason {
	switch {
	case errors.Is(p.Err, drive.ErrIdentityChanged):
		return imagefarmv1.FailureReason_FAILURE_REASON_GUARD_IDENTITY_CHANGED
	case errors.Is(p.Err, drive.ErrBusy):
		return imagefarmv1.FailureReason_FAILURE_REASON_GUARD_NOT_EXCLUSIVE
	case errors.Is(p.Err, drive.ErrNotFound) || p.Err == nil && len(p.Verdicts) == 0:
		return imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_REMOVED
	}
	for _, v := range p.Verdicts {
		if !v.OK {
			return guardReasons[v.Guard]
		}
	}
	return imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL
}

var guardReasons = map[string]imagefarmv1.FailureReason{
	drive.GuardSystem:   imagefarmv1.FailureReason_FAILURE_REASON_GUARD_SYSTEM_DISK,
	drive.GuardCache:    imagefarmv1.FailureReason_FAILURE_REASON_GUARD_SYSTEM_DISK,
	drive.GuardMounted:  imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MOUNTED,
	drive.GuardHolders:  imagefarmv1.FailureReason_FAILURE_REASON_GUARD_MOUNTED,
	drive.GuardPolicy:   imagefarmv1.FailureReason_FAILURE_REASON_GUARD_POLICY,
	drive.GuardSize:     imagefarmv1.FailureReason_FAILURE_REASON_GUARD_TOO_SMALL,
	drive.GuardReadOnly: imagefarmv1.FailureReason_FAILURE_REASON_GUARD_READ_ONLY,
}

func ptr[T any](v T) *T { return &v }
