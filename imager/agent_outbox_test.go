package imager

import (
	"slices"
	"testing"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

func progressMsg(task string, epoch uint64, done uint64) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_TaskProgress{TaskProgress: &imagefarmv1.TaskProgress{
		TaskId: task, Epoch: epoch, State: imagefarmv1.TaskState_TASK_STATE_WRITING, BytesDone: done}}}
}

func resultMsg(task string, epoch uint64) *imagefarmv1.ConnectRequest {
	return resultMessage(&imagefarmv1.TaskResult{TaskId: task, Epoch: epoch, State: imagefarmv1.TaskState_TASK_STATE_DONE})
}

func insertedMsg(id string) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveInserted{DriveInserted: &imagefarmv1.DriveInserted{
		Drive: &imagefarmv1.Drive{Id: id}}}}
}

func removedMsg(id string) *imagefarmv1.ConnectRequest {
	return &imagefarmv1.ConnectRequest{Body: &imagefarmv1.ConnectRequest_DriveRemoved{DriveRemoved: &imagefarmv1.DriveRemoved{DriveId: id}}}
}

func seqs(ms []*imagefarmv1.ConnectRequest) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.GetSeq())
	}
	return out
}

func TestOutbox(t *testing.T) {
	var gone []uint64
	o := newOutbox(func(m *imagefarmv1.ConnectRequest) { gone = append(gone, m.GetSeq()) })
	o.add(progressMsg("t1", 3, 10)) // 1: replaced by 4
	o.add(insertedMsg("usb-a"))     // 2: replaced by 6
	o.add(progressMsg("t1", 2, 10)) // 3: another run of t1, kept
	o.add(progressMsg("t1", 3, 20)) // 4
	o.add(resultMsg("t1", 3))       // 5: results are never replaced
	o.add(removedMsg("usb-a"))      // 6
	o.add(resultMsg("t1", 3))       // 7
	if got, want := seqs(o.next()), []uint64{3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("next() = seqs %v, want %v", got, want)
	}
	if got := o.next(); len(got) != 0 {
		t.Errorf("next() again = %v, want nothing: all was sent", got)
	}
	o.ack(4) // covers 3 as well
	if !slices.Equal(gone, []uint64{3, 4}) {
		t.Errorf("acknowledged %v, want [3 4]", gone)
	}
	o.add(progressMsg("t2", 3, 1)) // 8
	if got, want := seqs(o.next()), []uint64{8}; !slices.Equal(got, want) {
		t.Errorf("next() after a new message = %v, want %v", got, want)
	}
	// A new stream: what the controller applied is acknowledged, the rest
	// goes out again in order.
	o.restart(5)
	if got, want := seqs(o.next()), []uint64{6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("next() after restart(5) = %v, want %v", got, want)
	}
	o.dropDriveEvents()
	o.dropTask(taskKey{"t1", 3})
	o.restart(0)
	if got, want := seqs(o.next()), []uint64{8}; !slices.Equal(got, want) {
		t.Errorf("kept after dropping drive events and t1 = %v, want %v", got, want)
	}
}
