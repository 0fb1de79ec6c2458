package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// report prints the figures and the checks, and reports whether every
// check passed.
func (b *bench) report(w io.Writer) bool {
	c, m := b.cfg, &b.m
	lat := b.rec.latencies()
	done := b.rec.doneTimes()
	b.rec.mu.Lock()
	first, anomalies := b.rec.first, b.rec.counters
	results, inserts, natsAcks := slices.Clone(b.rec.result), slices.Clone(b.rec.insert), slices.Clone(b.rec.natsAck)
	b.rec.mu.Unlock()
	wall := m.end.Sub(first)

	fmt.Fprintf(w, "\nimagefarm scheduling benchmark, %s, %d cores\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	fmt.Fprintf(w, "farm: %d simulated imagers × %d USB keys = %d drives (each imager: its own gRPC status stream and NATS connection)\n",
		c.Nodes, c.Drives, c.Nodes*c.Drives)
	fmt.Fprintf(w, "work: %d tasks as standing orders of %d over pool \"bench\", at most %d tasks submitted and not done; fake write %v;\n",
		c.Tasks, c.JobCount, c.Window, c.WriteTime)
	fmt.Fprintf(w, "      each written key is pulled and a new one inserted (DriveRemoved + DriveInserted) %v after its result is acked\n", c.SwapTime)
	fmt.Fprintf(w, "nats: %s; controller: a separate `imagefarm controller` process\n", b.nats.describe())
	if !m.finished {
		fmt.Fprintf(w, "UNFINISHED: %d of %d tasks done when the run stopped at %v\n", len(done), c.Tasks, wall.Round(time.Second))
	}
	fmt.Fprintf(w, "\nconnect: %d Hellos answered in %v (controller CPU %.1fs)\n", c.Nodes, m.connect.Round(time.Millisecond),
		(m.ctrlConnected.cpu - m.ctrlStart.cpu).Seconds())
	fmt.Fprintf(w, "submit→assign, from the later of SubmitJob's return and the key's insertion: %s  (%d tasks)\n", quantiles(lat.fromReturn), len(lat.fromReturn))
	fmt.Fprintf(w, "    when the submit came later (%5d tasks): %s\n", len(lat.afterSubmit), quantiles(lat.afterSubmit))
	fmt.Fprintf(w, "    when the insertion came later (%5d):    %s\n", len(lat.afterInsert), quantiles(lat.afterInsert))
	fmt.Fprintf(w, "    %d arrived before their SubmitJob returned, counted as 0\n", lat.early)
	if len(lat.fromReturn) > 0 {
		fmt.Fprintf(w, "    the slowest, %s, and the keys before it in its slot:\n", lat.slowest.serial)
		h := b.rec.slotHistory(lat.slowest.serial)
		for _, h := range h[max(0, len(h)-4):] {
			fmt.Fprintf(w, "        %s\n", h)
		}
	}
	fmt.Fprintf(w, "submit→assign, from the SubmitJob call (or insertion) instead:          %s\n", quantiles(lat.fromCall))
	fmt.Fprintf(w, "gap between consecutive assignments, all nodes merged: %s\n", quantiles(lat.gaps))
	fmt.Fprintf(w, "SubmitJob call:                       %s\n", quantiles(b.rec.submitTimes()))
	fmt.Fprintf(w, "TaskResult sent → controller's Ack:   %s\n", quantiles(results))
	fmt.Fprintf(w, "DriveInserted sent → controller's Ack: %s\n", quantiles(inserts))
	fmt.Fprintf(w, "assignment's NATS ack, confirmed:     %s\n", quantiles(natsAcks))
	fmt.Fprintf(w, "\nlifecycle: %d tasks done in %.1fs = %.1f tasks/s (first SubmitJob to the last result acknowledged)\n",
		len(done), wall.Seconds(), float64(len(done))/wall.Seconds())
	fmt.Fprintf(w, "    by tenths of the tasks:%s\n", tenths(first, done))
	run := m.ctrlEnd.cpu - m.ctrlConnected.cpu
	fmt.Fprintf(w, "controller: %.1f CPU-s over the run (%.0f%% of one core, %.1f ms per task), %.1f CPU-s in all; peak RSS (VmHWM) %d MiB\n",
		run.Seconds(), 100*run.Seconds()/wall.Seconds(), run.Seconds()*1000/float64(max(len(done), 1)), m.ctrlEnd.cpu.Seconds(), m.ctrlEnd.peakRSS>>20)
	if b.nats.proc != nil {
		nrun := m.natsEnd.cpu - m.natsStart.cpu
		fmt.Fprintf(w, "nats-server: %.1f CPU-s from the controller's start (%.0f%% of one core over the run), peak RSS %d MiB\n",
			nrun.Seconds(), 100*nrun.Seconds()/wall.Seconds(), m.natsEnd.peakRSS>>20)
	}
	self, _ := procUsage(os.Getpid())
	what := "simulated imagers and submitter"
	if b.nats.proc == nil {
		what += " + embedded NATS"
	}
	fmt.Fprintf(w, "bench process (%s): %.1f CPU-s, peak RSS %d MiB\n", what, self.cpu.Seconds(), self.peakRSS>>20)
	return b.reportChecks(w, len(done), anomalies)
}

func (b *bench) reportChecks(w io.Writer, done int, a counters) bool {
	m := &b.m
	assigned, _ := b.rec.progress()
	over := b.rec.overAssigned()
	ok := m.finished && m.verifyErr == nil && a == counters{} && len(over) == 0
	for _, j := range m.jobs {
		ok = ok && j.GetState() == imagefarmv1.JobState_JOB_STATE_SUCCEEDED
	}
	fmt.Fprintf(w, "\nchecks: %s; %d keys written for %d tasks, %d assignments; duplicates %d, redeliveries %d, stale %d, StopTask %d, cancels %d, ack errors %d, subscriber errors %d\n",
		jobStates(m.jobs), done, b.cfg.Tasks, assigned, a.duplicates, a.redelivered, a.stale, a.stops, a.cancels, a.ackErrors, a.subErrors)
	if len(over) > 0 {
		extra := 0
		for n := range maps.Values(over) {
			extra += n
		}
		fmt.Fprintf(w, "    OVER-ASSIGNED: %d standing orders got %d keys written beyond their count; the first of them:\n", len(over), extra)
		for _, j := range m.overAssigned {
			b.reportOverAssigned(w, j)
		}
	}
	if rw := b.rec.rewritten(); len(rw) > 0 {
		ok = false
		b.reportRewrites(w, rw)
	}
	if m.verifyErr != nil {
		fmt.Fprintf(w, "    reading jobs back failed: %v\n", m.verifyErr)
	}
	fmt.Fprintf(w, "full scans after the run: ListJobs (reads every task record) %v, ListDrives (every drive) %v\n",
		m.listJobs.Round(time.Millisecond), m.listDrives.Round(time.Millisecond))
	fmt.Fprintf(w, "GetJob of a job with %d tasks (the controller reads a job so for every assignment and every result): %s\n",
		m.getJobTasks, quantiles(m.getJob))
	fmt.Fprintf(w, "controller log warnings: %s\n", logWarnings(filepath.Join(b.cfg.Dir, "controller.log")))
	fmt.Fprintf(w, "work folder (logs, store, NATS data): %s\n", b.cfg.Dir)
	return ok
}

// reportRewrites prints the keys given a second task, times from the
// first submit.
func (b *bench) reportRewrites(w io.Writer, rw []rewrite) {
	concurrent, refused := 0, 0
	for _, x := range rw {
		if x.concurrent {
			concurrent++
		}
		if x.second.refused {
			refused++
		}
	}
	fmt.Fprintf(w, "    KEYS GIVEN A SECOND TASK: %d (%d while the first task was running, %d after it was done); %d of them refused by the imager's identity check because the key had been pulled, %d written again\n",
		len(rw), concurrent, len(rw)-concurrent, refused, len(rw)-refused)
	first := b.rec.first
	for _, x := range rw[:min(len(rw), 6)] {
		fmt.Fprintf(w, "        %s: %s assigned +%v, done +%v, key pulled +%v; %s created +%v, assigned +%v\n", x.serial, x.first.task,
			ms(x.first.at.Sub(first)), ms(x.firstDone.Sub(first)), ms(x.pulled.Sub(first)), x.second.task,
			ms(b.m.created[x.second.task].Sub(first)), ms(x.second.at.Sub(first)))
	}
}

// reportOverAssigned prints a standing order that got more tasks than its
// count, with its last tasks, times from the first submit.
func (b *bench) reportOverAssigned(w io.Writer, j *imagefarmv1.Job) {
	first := b.rec.first
	count := int(j.GetTargets().GetStandingOrder().GetCount())
	fmt.Fprintf(w, "      job %s, count %d, submitted at +%v, is %v with %d tasks; from its task %d on:\n", j.GetId(),
		count, ms(b.rec.jobs[j.GetId()].end.Sub(first)), j.GetState(), len(j.GetTasks()), count-1)
	for _, t := range j.GetTasks()[min(max(count-2, 0), len(j.GetTasks())):] {
		fmt.Fprintf(w, "        %s %s/%s %s attempt %d created +%v finished +%v\n", t.GetId(), t.GetNodeId(), t.GetDrive().GetSerial(),
			strings.TrimPrefix(t.GetState().String(), "TASK_STATE_"), t.GetAttempt(),
			ms(t.GetCreateTime().AsTime().Sub(first)), ms(t.GetFinishTime().AsTime().Sub(first)))
	}
}

// quantiles renders p50, p90, p99 and max of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v", ms(q(0.50)), ms(q(0.90)), ms(q(0.99)), ms(s[len(s)-1]))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// tenths renders how fast each tenth of the tasks went through, to show
// whether the rate holds as the store fills.
func tenths(first time.Time, done []time.Time) string {
	var b strings.Builder
	prev := first
	for k := 1; k <= 10 && len(done) >= 10; k++ {
		t := done[k*len(done)/10-1]
		fmt.Fprintf(&b, " %.0f/s", float64(len(done)/10)/t.Sub(prev).Seconds())
		prev = t
	}
	return b.String()
}

// jobStates counts the jobs read back by state.
func jobStates(jobs []*imagefarmv1.Job) string {
	n := map[string]int{}
	var done uint32
	for _, j := range jobs {
		n[strings.TrimPrefix(j.GetState().String(), "JOB_STATE_")]++
		done += j.GetTaskCounts().GetDone()
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
	}
	return fmt.Sprintf("%d jobs (%s) with %d tasks done", len(jobs), strings.Join(parts, ", "), done)
}

// logWarnings counts the controller's WARN and ERROR lines by message.
func logWarnings(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	n := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		msg := line
		if _, after, ok := strings.Cut(line, "msg="); ok {
			msg = after
			if strings.HasPrefix(msg, `"`) {
				if end := strings.Index(msg[1:], `"`); end >= 0 {
					msg = msg[:end+2]
				}
			} else if sp := strings.IndexByte(msg, ' '); sp >= 0 {
				msg = msg[:sp]
			}
		}
		n[msg]++
	}
	if len(n) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%dx %s", n[k], k))
	}
	return strings.Join(parts, "; ")
}
