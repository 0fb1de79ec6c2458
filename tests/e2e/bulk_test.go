package e2e

import (
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestBulkStandingOrder is a bench producing keys: a standing order for 24
// keys while technicians plug them in batches of 6 over two imagers; the
// job list shows how many are done after each batch, and the job report
// lists every key with its serial, time and verified digest.
func TestBulkStandingOrder(t *testing.T) {
	requireE2E(t)
	f := startFarmWith(t, farmConfig{nodes: map[string]int{"n1": 0, "n2": 0}, driveSize: 8 << 20})
	f.pushImage("media:1", 4<<20)
	id := f.submit(standingOrder("media:1", 24))
	start := time.Now()
	for batch := 1; batch <= 4; batch++ {
		for i := 1; i <= 3; i++ {
			f.addDrive("n1", fmt.Sprintf("b%d-%d.img", batch, i))
			f.addDrive("n2", fmt.Sprintf("b%d-%d.img", batch, i))
		}
		want := fmt.Sprintf("%d/24", 6*batch)
		testenv.Eventually(f.t, 60*time.Second, want+" keys done", func() bool {
			out, _ := f.cli("job", "ls")
			return strings.Contains(out, id) && strings.Contains(out, want)
		})
	}
	job := waitFinal(t, f, id)
	if job.GetState() != imagefarmv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("standing order ended %v, want SUCCEEDED", job.GetState())
	}
	out, code := f.cli("job", "report", id, "--csv")
	if code != 0 {
		t.Fatalf("job report: %s", out)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 25 {
		t.Fatalf("job report --csv gave %d rows (%v), want a header and 24:\n%s", len(rows), err, out)
	}
	col := func(name string) int { return slices.Index(rows[0], name) }
	serials := map[string]bool{}
	for _, r := range rows[1:] {
		serials[r[col("serial")]] = true
		if r[col("result")] != "DONE" || r[col("verified_digest")] != job.GetManifestDigest() || r[col("finished")] == "" {
			t.Errorf("report row %q: want DONE, verified against %s, with its time", r, job.GetManifestDigest())
		}
	}
	if len(serials) != 24 {
		t.Errorf("report names %d distinct serials, want 24", len(serials))
	}
	t.Logf("24 keys in 4 batches of 6 over 2 imagers: %v; %v", time.Since(start).Round(100*time.Millisecond), f.checkInvariants([]string{id}))
}
