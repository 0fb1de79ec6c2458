package controller

import (
	"cmp"
	"context"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/devices"
	"github.com/imagefarm/imagefarm/controller/scheduler"
	"github.com/imagefarm/imagefarm/controller/state"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// storeView reads the farm from the store as the scheduler sees it, and
// remembers image sizes.
type storeView struct {
	st    *state.Store
	devs  *devices.Store // device records, for why device jobs wait
	cat   *catalog.Catalog
	log   *slog.Logger
	sizes sync.Map // manifest digest -> image size (uint64)
}

// imageSize is the size of the image a manifest describes, remembered.
func (v *storeView) imageSize(ctx context.Context, digest string) (uint64, error) {
	if v, ok := v.sizes.Load(digest); ok {
		return v.(uint64), nil
	}
	m, err := v.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return 0, err
	}
	v.sizes.Store(digest, uint64(m.Size))
	return uint64(m.Size), nil
}

// checkDriveImage refuses an image that does not go on a drive (see
// catalog.Manifest.ForDrive), and remembers the size of one that does.
func (v *storeView) checkDriveImage(ctx context.Context, digest string) error {
	m, err := v.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return err
	}
	if err := m.ForDrive(); err != nil {
		return err
	}
	v.sizes.Store(digest, uint64(m.Size))
	return nil
}

// snapshot builds the scheduler's view of the farm and of the open jobs.
func (v *storeView) snapshot(ctx context.Context) (scheduler.Farm, []scheduler.Job, error) {
	farm, tasks, err := v.farmSnapshot(ctx)
	if err != nil {
		return scheduler.Farm{}, nil, err
	}
	jobs, _, _, err := v.openJobs(ctx, tasks)
	return farm, jobs, err
}

// farmSnapshot builds the scheduler's view of the nodes and drives, with
// the tasks it was built from.
func (v *storeView) farmSnapshot(ctx context.Context) (scheduler.Farm, []*imagefarmv1.Task, error) {
	nodes, err := v.st.ListNodes(ctx, state.NodeFilter{})
	if err != nil {
		return scheduler.Farm{}, nil, err
	}
	drives, err := v.st.ListDrives(ctx, "")
	if err != nil {
		return scheduler.Farm{}, nil, err
	}
	tasks, err := v.st.ListTasks(ctx, "")
	if err != nil {
		return scheduler.Farm{}, nil, err
	}
	return buildFarm(nodes, drives, tasks), tasks, nil
}

func buildFarm(nodes []*imagefarmv1.Node, drives []*imagefarmv1.Drive, tasks []*imagefarmv1.Task) scheduler.Farm {
	busy := map[string]string{} // node/drive -> running task
	for _, t := range tasks {
		if !t.GetState().Final() {
			busy[t.GetNodeId()+"/"+t.GetDrive().GetId()] = t.GetId()
		}
	}
	byNode := map[string][]scheduler.Drive{}
	for _, d := range drives {
		sd := scheduler.Drive{ID: d.GetId(), Serial: d.GetSerial(), Model: d.GetModel(), Size: d.GetSizeBytes(),
			Removable: d.GetRemovable(), Slot: d.GetSlot(), SlotLabel: d.GetSlotLabel(), Inserted: d.GetInsertTime().AsTime(),
			TaskID: cmp.Or(busy[d.GetNodeId()+"/"+d.GetId()], d.GetTaskId()), LastTaskID: d.GetLastTaskId(),
			Virtual: d.GetTransport() == imagefarmv1.Transport_TRANSPORT_VIRTUAL}
		if d.GetState() == imagefarmv1.DriveState_DRIVE_STATE_REFUSED {
			sd.Refused = d.GetRefusal().GetMessage()
		}
		byNode[d.GetNodeId()] = append(byNode[d.GetNodeId()], sd)
	}
	var farm scheduler.Farm
	for _, n := range nodes {
		farm.Nodes = append(farm.Nodes, scheduler.Node{ID: n.GetId(), Pool: n.GetPool(), Labels: n.GetLabels(),
			State: n.GetState(), Epoch: n.GetEpoch(), LastHeartbeat: n.GetLastHeartbeatTime().AsTime(), Drives: byNode[n.GetId()]})
	}
	return farm
}

// openJobs returns the jobs still taking or running tasks, as the
// scheduler sees them, why each waits as stored (by job id), and why each
// device job waits now (deviceWaiting), which the scheduler cannot say.
func (v *storeView) openJobs(ctx context.Context, tasks []*imagefarmv1.Task) ([]scheduler.Job, map[string]string, map[string]string, error) {
	byJob := map[string][]scheduler.Task{}
	for _, t := range tasks {
		byJob[t.GetJobId()] = append(byJob[t.GetJobId()], scheduler.Task{ID: t.GetId(), NodeID: t.GetNodeId(),
			DriveID: t.GetDrive().GetId(), State: t.GetState(), Created: t.GetCreateTime().AsTime()})
	}
	var out []scheduler.Job
	waiting, devWaiting := map[string]string{}, map[string]string{}
	token := ""
	for {
		jobs, next, err := v.st.ListJobs(ctx, openJobsFilter(token))
		if err != nil {
			return nil, nil, nil, err
		}
		for _, j := range jobs {
			waiting[j.GetId()] = j.GetWaitingReason()
			if isDeviceJob(j) && v.devs != nil {
				devWaiting[j.GetId()] = deviceWaiting(ctx, v.devs, j, byJob[j.GetId()])
			}
			sj, err := v.schedJob(ctx, j)
			if err != nil {
				v.log.Warn("job cannot be scheduled", "job_id", j.GetId(), "error", err)
				continue
			}
			sj.Tasks = byJob[j.GetId()]
			out = append(out, sj)
		}
		if token = next; token == "" {
			return out, waiting, devWaiting, nil
		}
	}
}

// schedJob turns a stored job into the scheduler's form.
func (v *storeView) schedJob(ctx context.Context, j *imagefarmv1.Job) (scheduler.Job, error) {
	if isCaptureJob(j) { // it has no image: it makes one
		return toSchedJob(j, 0)
	}
	size, err := v.imageSize(ctx, j.GetManifestDigest())
	if err != nil {
		return scheduler.Job{}, err
	}
	return toSchedJob(j, size)
}

// toSchedJob is j, whose image is size bytes, in the scheduler's form.
func toSchedJob(j *imagefarmv1.Job, size uint64) (scheduler.Job, error) {
	sj := scheduler.Job{ID: j.GetId(), Created: j.GetCreateTime().AsTime(), ImageSize: size}
	if so := j.GetTargets().GetStandingOrder(); so != nil {
		sj.Selector, sj.Count = schedSelector(so.GetSelector()), int(so.GetCount())
		return sj, nil
	}
	for _, id := range j.GetTargets().GetDrives().GetDriveIds() {
		ref, err := scheduler.ParseDriveRef(id)
		if err != nil {
			return scheduler.Job{}, err
		}
		sj.Drives = append(sj.Drives, ref)
	}
	return sj, nil
}

// schedSelector is sel in the scheduler's form; an unset selector, like an
// empty one, matches every drive.
func schedSelector(sel *imagefarmv1.Selector) *scheduler.Selector {
	if sel == nil {
		sel = &imagefarmv1.Selector{}
	}
	return &scheduler.Selector{Pool: sel.Pool, Labels: sel.Labels, NodeIDs: sel.NodeIds,
		MinSize: sel.MinSizeBytes, Removable: sel.Removable}
}

func now() *timestamppb.Timestamp { return timestamppb.Now() }
