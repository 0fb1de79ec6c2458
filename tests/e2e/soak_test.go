package e2e

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

var (
	soakFor  = flag.Duration("soak", 0, "how long TestSoak mixes faults over jobs (0: TestSoak is skipped; scripts/test.sh runs it with -soak=3m)")
	soakSeed = flag.Uint64("soak-seed", 0, "seed of TestSoak's choices (0: from the clock; the test prints it)")
)

// fault is one thing the soak does to the farm while jobs run.
type fault struct {
	name string
	// restarts is set for faults that replace a process; the soak uses
	// them only in its first half, so that every process then runs through
	// the second half and can be checked for leaks.
	restarts bool
	do       func(s *soak)
}

// soak is the state of one TestSoak run.
type soak struct {
	f      *farm
	proxy  *testenv.FaultProxy
	rng    *rand.Rand
	drives []string // NODE/DRIVE of every virtual drive
	jobs   []string // this cycle's jobs
	// unlisted counts submits refused because a replugged drive was
	// missing from the controller's drive list for a moment (seen once in
	// CI, 2026-12-08, not understood yet: the soak reports it rather than
	// failing on a refusal the API is right to give at that moment).
	unlisted int
}

// submit submits req, trying again for up to 10 s while the controller
// says a drive of it is not listed (a replugged key being seen again).
func (s *soak) submit(req *imagefarmv1.SubmitJobRequest) string {
	s.f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := s.f.api.SubmitJob(context.Background(), req)
		if err == nil {
			return resp.GetJob().GetId()
		}
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "has no drive") || time.Now().After(deadline) {
			s.f.t.Fatalf("submit %s: %v", req.GetImageRef(), err)
		}
		s.unlisted++
		s.f.t.Logf("submit %s refused, a drive not listed yet; trying again: %v", req.GetImageRef(), err)
		time.Sleep(200 * time.Millisecond) // pacing the retries; nothing is proven by it
	}
}

var faults = []fault{
	{"none", false, func(s *soak) {}},
	{"imager killed", true, func(s *soak) {
		node := s.node()
		s.f.imagers[node].kill()
		s.f.waitNodeState(node, imagefarmv1.NodeState_NODE_STATE_LOST) // its tasks fenced
		s.f.imagers[node].start()
	}},
	{"imager frozen past its TTL", false, func(s *soak) {
		node := s.node()
		s.f.imagers[node].pause()
		s.f.waitNodeState(node, imagefarmv1.NodeState_NODE_STATE_LOST)
		s.f.imagers[node].resume()
	}},
	{"controller killed", true, func(s *soak) {
		s.f.controller.kill()
		time.Sleep(time.Second)
		s.f.controller.start()
	}},
	{"NATS restarted", true, func(s *soak) {
		s.f.natsProc.kill()
		time.Sleep(2 * time.Second)
		s.f.natsProc.start()
	}},
	{"storage refused 5s", false, func(s *soak) {
		s.proxy.Refuse(true)
		time.Sleep(5 * time.Second)
		s.proxy.Refuse(false)
	}},
	{"storage cuts connections", false, func(s *soak) {
		s.proxy.CutAfter(256 << 10)
		time.Sleep(3 * time.Second)
		s.proxy.CutAfter(0)
	}},
	{"storage latency 100ms", false, func(s *soak) {
		s.proxy.SetLatency(100 * time.Millisecond)
		time.Sleep(3 * time.Second)
		s.proxy.SetLatency(0)
	}},
	{"job canceled", false, func(s *soak) {
		s.f.api.CancelJob(context.Background(), &imagefarmv1.CancelJobRequest{JobId: s.jobs[s.rng.IntN(len(s.jobs))]})
	}},
	{"drive pulled", false, func(s *soak) {
		// A key pulled: its virtual drive's file is deleted under the writer.
		job := s.f.job(s.jobs[0])
		if len(job.GetTasks()) > 0 {
			task := job.GetTasks()[s.rng.IntN(len(job.GetTasks()))]
			if s.f.pulled == nil {
				s.f.pulled = map[string]time.Time{}
			}
			s.f.pulled[task.GetNodeId()+"/"+task.GetDrive().GetId()] = time.Now()
			os.Remove(s.f.drivePath(task.GetNodeId(), task.GetDrive().GetId()))
			s.f.waitDrives(task.GetNodeId(), 5) // seen gone
		}
	}},
}

func (s *soak) node() string { return []string{"n1", "n2"}[s.rng.IntN(2)] }

// TestSoak runs jobs for -soak (skipped without it; scripts/test.sh gives
// -soak=3m, so a plain go test ./... stays short) while injecting a
// random fault in each: processes killed, frozen and restarted, storage
// refused, cut and slowed, jobs canceled, drives pulled. Then it checks
// the invariants over every job, and that the controller's and imagers'
// goroutines, open files and heap came back to what they were once the
// process-restarting faults stopped.
func TestSoak(t *testing.T) {
	if *soakFor <= 0 {
		t.Skip("the soak runs only with -soak=D: go test -race -count=1 -run TestSoak ./tests/e2e/ -soak=3m (scripts/test.sh runs it)")
	}
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("soak for %v, seed %d (rerun with -soak-seed=%d)", *soakFor, seed, seed)
	const ttl = 3 * time.Second
	f, proxy := throttled(t, farmConfig{nodes: map[string]int{"n1": 6, "n2": 6}, driveSize: 12 << 20, ttl: ttl, ackWait: 2 * time.Second}, 4<<20)
	s := &soak{f: f, proxy: proxy, rng: rand.New(rand.NewPCG(seed, 1))}
	for _, n := range []string{"n1", "n2"} {
		for i := 1; i <= 6; i++ {
			s.drives = append(s.drives, fmt.Sprintf("%s/virt-d%d.img", n, i))
		}
	}
	images := []string{"soak-a:1", "soak-b:1", "soak-c:1"} // names of their own: one name going back a version is a rollback, refused
	for _, ref := range images {
		f.pushImage(ref, 8<<20)
	}
	start := time.Now()
	var all []string
	count := map[string]int{}
	var base map[*proc]usage
	var baseLives map[*proc]int
	for cycle := 0; time.Since(start) < *soakFor; cycle++ {
		late := time.Since(start) > *soakFor/2
		if late && base == nil {
			base, baseLives = f.usages(), f.livesNow()
		}
		s.jobs = nil
		perm := s.rng.Perm(len(s.drives))
		for used := 0; used < len(perm) && len(s.jobs) < 2; {
			n := 1 + s.rng.IntN(min(6, len(perm)-used))
			var ids []string
			for _, i := range perm[used : used+n] {
				ids = append(ids, s.drives[i])
			}
			used += n
			s.jobs = append(s.jobs, s.submit(drivesJob(images[s.rng.IntN(len(images))], ids...)))
		}
		all = append(all, s.jobs...)
		testenv.Eventually(f.t, 60*time.Second, "a task under way", func() bool {
			return countTasks(f.job(s.jobs[0]), "", func(t *imagefarmv1.Task) bool {
				return running(t.GetState()) || t.GetState().Final()
			}) > 0
		})
		fl := faults[s.rng.IntN(len(faults))]
		for late && fl.restarts {
			fl = faults[s.rng.IntN(len(faults))]
		}
		fl.do(s)
		count[fl.name]++
		f.waitNodes(2)
		for _, id := range s.jobs {
			waitFinal(t, f, id)
		}
		s.replug()
	}
	sum := f.checkInvariants(all)
	states := map[string]int{}
	for _, id := range all {
		states[f.job(id).GetState().String()]++
	}
	t.Logf("soak: %d jobs in %v, faults %v, jobs ended %v; jobs lost 0; submits retried for an unlisted drive %d; %v", len(all), time.Since(start).Round(time.Second), count, states, s.unlisted, sum)
	if base != nil {
		f.checkLeaks(base, baseLives)
	}
}

// replug plugs a new key in for every one pulled.
func (s *soak) replug() {
	for _, d := range s.drives {
		node, id, _ := strings.Cut(d, "/")
		if _, err := os.Stat(s.f.drivePath(node, id)); err != nil {
			s.f.addDrive(node, strings.TrimPrefix(id, "virt-"))
		}
	}
	s.f.waitDrives("n1", 6)
	s.f.waitDrives("n2", 6)
}

// usages reads every imagefarm process's usage.
func (f *farm) usages() map[*proc]usage {
	f.t.Helper()
	out := map[*proc]usage{}
	for _, p := range f.procs() {
		u, err := p.usage()
		if err != nil {
			f.t.Fatalf("usage of %s: %v", p.name, err)
		}
		out[p] = u
	}
	return out
}

func (f *farm) livesNow() map[*proc]int {
	out := map[*proc]int{}
	for _, p := range f.procs() {
		p.mu.Lock()
		out[p] = len(p.lives)
		p.mu.Unlock()
	}
	return out
}

// checkLeaks compares each process's usage now, idle, with base: what
// the same incarnation held before. Goroutines and open files may differ
// by a few (connections come and go), the heap by a little.
func (f *farm) checkLeaks(base map[*proc]usage, lives map[*proc]int) {
	f.t.Helper()
	time.Sleep(2 * time.Second) // idle: streams and timers of the last jobs end
	now := f.usages()
	for p, b := range base {
		n := now[p]
		if f.livesNow()[p] != lives[p] {
			f.t.Errorf("%s was restarted during the leak check's window", p.name)
			continue
		}
		f.t.Logf("%s: %v at the baseline, %v at the end", p.name, b, n)
		if n.goroutines > b.goroutines+20 || n.files > b.files+10 || n.heap > 2*b.heap+32<<20 {
			f.t.Errorf("%s leaks: %v at the baseline, %v at the end", p.name, b, n)
		}
	}
}

// procs is the controller and the imagers, in a stable order.
func (f *farm) procs() []*proc {
	out := []*proc{f.controller}
	for _, node := range slices.Sorted(maps.Keys(f.imagers)) {
		out = append(out, f.imagers[node])
	}
	return out
}
