package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// tally is what checkInvariants counted, for a scenario's figures.
type tally struct {
	jobs, events, opens int
	replaced            int            // DONE drives pulled afterwards: not read back
	tasks               map[string]int // final task state -> count
}

func (t tally) String() string {
	return fmt.Sprintf("%d jobs, %d events, %d drive opens, tasks %v, %d DONE keys pulled afterwards", t.jobs, t.events, t.opens, t.tasks, t.replaced)
}

// checkInvariants asserts, over the given jobs (all the scenario ran), the
// invariants every fault scenario must keep:
//
//   - every job reaches a final state (none stays RUNNING forever);
//   - every state change the controller acknowledged is in the events
//     stream: a job's events, read back from revision 1, come in strictly
//     increasing revisions, each task's last event is the state GetJob
//     reports, and nothing changes a task after it reached a final state
//     (so a fenced node's late reports were refused);
//   - no task is DONE unless its drive was read back and matched: a DONE
//     task names the job's manifest as verified, and a drive whose last
//     task is DONE holds the image, hashed here independently;
//   - no drive was written by two tasks at once, nor opened under an
//     identity other than the one planned, and no task opened its drive
//     twice (a redelivery never writes a drive twice). The imagers'
//     "drive opened"/"drive closed" log lines are the evidence.
func (f *farm) checkInvariants(jobIDs []string) tally {
	f.t.Helper()
	sum := tally{jobs: len(jobIDs), tasks: map[string]int{}}
	planned := map[string]string{} // task -> "node/drive serial/size" planned
	last := map[string]*imagefarmv1.Task{}
	jobOf := map[string]*imagefarmv1.Job{}
	for _, id := range jobIDs {
		job := waitFinal(f.t, f, id)
		events := f.events(id)
		sum.events += len(events)
		f.checkEvents(job, events)
		for _, task := range job.GetTasks() {
			sum.tasks[strings.TrimPrefix(task.GetState().String(), "TASK_STATE_")]++
			key := task.GetNodeId() + "/" + task.GetDrive().GetId()
			planned[task.GetId()] = fmt.Sprintf("%s %s/%d", key, task.GetDrive().GetSerial(), task.GetDrive().GetSizeBytes())
			if l := last[key]; l == nil || task.GetCreateTime().AsTime().After(l.GetCreateTime().AsTime()) {
				last[key], jobOf[key] = task, job
			}
			if task.GetState() == imagefarmv1.TaskState_TASK_STATE_DONE && task.GetVerifiedDigest() != job.GetManifestDigest() {
				f.t.Errorf("task %s is DONE verified against %q, the job's image is %s", task.GetId(), task.GetVerifiedDigest(), job.GetManifestDigest())
			}
		}
	}
	for key, task := range last {
		if task.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
			continue
		}
		if at, ok := f.pulled[key]; ok && at.After(task.GetCreateTime().AsTime()) {
			// Pulled after its task began (perhaps after it was DONE): the
			// key at that path now is a blank new one, not what was verified.
			sum.replaced++
			continue
		}
		img := f.images[jobOf[key].GetImageRef()]
		info, err := os.Stat(img)
		if err != nil {
			f.t.Fatalf("image of job %s: %v", jobOf[key].GetId(), err)
		}
		want := testenv.SHA256(f.t, img, -1)
		if got := testenv.SHA256(f.t, f.drivePath(task.GetNodeId(), task.GetDrive().GetId()), info.Size()); got != want {
			f.t.Errorf("task %s is DONE but drive %s holds sha256 %s, the image %s", task.GetId(), key, got, want)
		}
	}
	opens := f.driveOpens()
	sum.opens = len(opens)
	f.checkOpens(opens, planned)
	return sum
}

// events reads a job's stored events from revision 1 until its watch ends.
func (f *farm) events(id string) []*imagefarmv1.JobEvent {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := f.api.WatchJob(ctx, &imagefarmv1.WatchJobRequest{JobId: id, FromRevision: 1})
	if err != nil {
		f.t.Fatalf("watch %s: %v", id, err)
	}
	var events []*imagefarmv1.JobEvent
	for {
		resp, err := w.Recv()
		if err != nil {
			return events
		}
		if ev := resp.GetEvent(); ev != nil && ev.GetKind() != imagefarmv1.JobEventKind_JOB_EVENT_KIND_TASK_PROGRESS {
			events = append(events, ev)
		}
	}
}

// checkEvents checks one job's events against its final record.
func (f *farm) checkEvents(job *imagefarmv1.Job, events []*imagefarmv1.JobEvent) {
	f.t.Helper()
	var prev uint64
	lastTask := map[string]imagefarmv1.TaskState{}
	var lastJob imagefarmv1.JobState
	for _, ev := range events {
		if ev.GetRevision() <= prev {
			f.t.Errorf("job %s: event revision %d after %d", job.GetId(), ev.GetRevision(), prev)
		}
		prev = ev.GetRevision()
		if j := ev.GetJob(); j != nil {
			lastJob = j.GetState()
			continue
		}
		task := ev.GetTask()
		if was, ok := lastTask[task.GetId()]; ok && was.Final() && task.GetState() != was {
			f.t.Errorf("task %s changed from final %v to %v (revision %d): a late report was accepted", task.GetId(), was, task.GetState(), ev.GetRevision())
		}
		lastTask[task.GetId()] = task.GetState()
	}
	if lastJob != job.GetState() {
		f.t.Errorf("job %s is %v, its last job event says %v", job.GetId(), job.GetState(), lastJob)
	}
	for _, task := range job.GetTasks() {
		if lastTask[task.GetId()] != task.GetState() {
			f.t.Errorf("task %s is %v, its last event says %v", task.GetId(), task.GetState(), lastTask[task.GetId()])
		}
	}
}

// open is one time an imager held a drive open for writing.
type open struct {
	node, drive, path, ident, task string
	from, to                       time.Time
}

var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

// driveOpens reads every imager incarnation's log for the drives it opened
// and closed. A drive still open when its imager was killed counts as open
// until the kill.
func (f *farm) driveOpens() []open {
	f.t.Helper()
	var opens []open
	for node, p := range f.imagers {
		p.mu.Lock()
		lives := slices.Clone(p.lives)
		p.mu.Unlock()
		for _, l := range lives {
			end := l.end
			if end.IsZero() {
				end = time.Now()
			}
			pending := map[string]int{} // drive -> index in opens
			file, err := os.Open(l.log)
			if err != nil {
				f.t.Fatal(err)
			}
			sc := bufio.NewScanner(file)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				kv := map[string]string{}
				for _, m := range logField.FindAllStringSubmatch(sc.Text(), -1) {
					if v, err := strconv.Unquote(m[2]); err == nil {
						kv[m[1]] = v
					} else {
						kv[m[1]] = m[2]
					}
				}
				at, _ := time.Parse(time.RFC3339Nano, kv["time"])
				switch kv["msg"] {
				case "drive opened":
					pending[kv["drive"]] = len(opens)
					opens = append(opens, open{node: node, drive: kv["drive"], path: kv["path"], ident: kv["serial"] + "/" + kv["size"], task: kv["task_id"], from: at, to: end})
				case "drive closed":
					if i, ok := pending[kv["drive"]]; ok {
						opens[i].to = at
						delete(pending, kv["drive"])
					}
				}
			}
			file.Close()
		}
	}
	return opens
}

// checkOpens asserts that no drive was open twice at once, each open was
// of the identity planned, and no task opened its drive twice.
func (f *farm) checkOpens(opens []open, planned map[string]string) {
	f.t.Helper()
	byPath := map[string][]open{}
	byTask := map[string]int{}
	for _, o := range opens {
		byPath[o.path] = append(byPath[o.path], o)
		byTask[o.task]++
		if got := o.node + "/" + o.drive + " " + o.ident; got != planned[o.task] {
			f.t.Errorf("task %s opened %s; it was planned for %s", o.task, got, planned[o.task])
		}
	}
	for path, os := range byPath {
		slices.SortFunc(os, func(a, b open) int { return a.from.Compare(b.from) })
		for i := 1; i < len(os); i++ {
			if os[i].from.Before(os[i-1].to) {
				f.t.Errorf("%s was open by two writers at once: task %s %v-%v and task %s %v-%v", path,
					os[i-1].task, os[i-1].from.Format(time.StampMilli), os[i-1].to.Format(time.StampMilli),
					os[i].task, os[i].from.Format(time.StampMilli), os[i].to.Format(time.StampMilli))
			}
		}
	}
	for task, n := range byTask {
		if task == "" || n > 1 {
			f.t.Errorf("task %q opened its drive %d times: written twice", task, n)
		}
	}
}
