package imager_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

func TestRunTasksChecksEachPlannedDrive(t *testing.T) {
	b := newBench(t, 16*chunkSize)
	dir := t.TempDir()
	for name, size := range map[string]int64{"good.img": 20 * chunkSize, "swapped.img": 20 * chunkSize, "small.img": chunkSize} {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{0xEE}, int(size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := drive.Config{VirtualDir: dir}
	task := func(id string, size int64) *imagefarmv1.TaskAssignment {
		return &imagefarmv1.TaskAssignment{TaskId: "t-" + id, Epoch: 7, ManifestDigest: b.digest,
			Drive: &imagefarmv1.DriveIdentity{Id: id, Serial: virtualSerial(t, cfg, id), SizeBytes: uint64(size), Model: "virtual drive"}}
	}
	tasks := []*imagefarmv1.TaskAssignment{
		task("virt-good.img", 20*chunkSize),
		task("virt-swapped.img", 30*chunkSize), // planned when it was larger: another drive now
		task("virt-small.img", chunkSize),
		task("virt-gone.img", 20*chunkSize),
	}
	w := imager.NewWriter(imager.WriterConfig{Catalog: b.cat, Log: slog.New(slog.DiscardHandler)})
	results := w.RunTasks(t.Context(), b.digest, tasks, cfg, nil, nil)
	want := []imagefarmv1.FailureReason{
		imagefarmv1.FailureReason_FAILURE_REASON_UNSPECIFIED,
		imagefarmv1.FailureReason_FAILURE_REASON_GUARD_IDENTITY_CHANGED,
		imagefarmv1.FailureReason_FAILURE_REASON_GUARD_TOO_SMALL,
		imagefarmv1.FailureReason_FAILURE_REASON_DRIVE_REMOVED,
	}
	for i, r := range results {
		if r.GetTaskId() != tasks[i].GetTaskId() || r.GetEpoch() != 7 || r.GetFailure().GetReason() != want[i] {
			t.Errorf("task %s: %v epoch %d failure %v, want reason %v", tasks[i].GetTaskId(), r.GetState(), r.GetEpoch(), r.GetFailure(), want[i])
		}
	}
	if results[0].GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || results[0].GetVerifiedDigest() != b.digest {
		t.Errorf("good drive: %v %q, want DONE with %s", results[0].GetState(), results[0].GetVerifiedDigest(), b.digest)
	}
	if got, want := testenv.SHA256(t, filepath.Join(dir, "good.img"), b.m.Size), testenv.SHA256(t, writeFile(t, b.image), -1); got != want {
		t.Errorf("good drive holds %s, the image %s", got, want)
	}
	for _, name := range []string{"swapped.img", "small.img"} {
		if data, _ := os.ReadFile(filepath.Join(dir, name)); bytes.Trim(data, "\xEE") != nil && len(bytes.Trim(data, "\xEE")) > 0 {
			t.Errorf("refused drive %s was written", name)
		}
	}
}

// virtualSerial is the serial of virtual drive id as discovered now, ""
// when there is no such drive.
func virtualSerial(t *testing.T, cfg drive.Config, id string) string {
	t.Helper()
	drives, err := drive.Discover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := drive.Find(drives, id)
	if err != nil {
		return ""
	}
	return d.Serial
}
