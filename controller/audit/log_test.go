package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/imagefarm/imagefarm/controller/audit"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

func openLog(t *testing.T, js jetstream.JetStream) *audit.Log {
	t.Helper()
	l, err := audit.Open(t.Context(), js, audit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// readAll returns every record of l, checked as a chain.
func readAll(t *testing.T, l *audit.Log) []*imagefarmv1.AuditRecord {
	t.Helper()
	var recs []*imagefarmv1.AuditRecord
	var c audit.Chain
	if err := l.Read(t.Context(), time.Time{}, 0, func(r *imagefarmv1.AuditRecord) error {
		recs = append(recs, r)
		return c.Add(r)
	}); err != nil {
		t.Fatalf("reading the chain: %v", err)
	}
	return recs
}

func TestWritersOnOneStreamDoNotFork(t *testing.T) {
	js := newJS(t)
	// Two logs are two controllers: each appends after the other's records.
	logs := []*audit.Log{openLog(t, js), openLog(t, js)}
	var g errgroup.Group
	for w, l := range logs {
		g.Go(func() error {
			for i := range 20 {
				if _, err := l.Append(t.Context(), &imagefarmv1.AuditRecord{Actor: fmt.Sprintf("w%d", w), Message: fmt.Sprint(i)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, logs[0])
	if len(recs) != 40 || recs[39].GetSequence() != 40 {
		t.Errorf("%d records, the last %d; want 40, 40", len(recs), recs[len(recs)-1].GetSequence())
	}
}

func TestReopenedLogContinuesTheChain(t *testing.T) {
	js := newJS(t)
	first := openLog(t, js)
	var last *imagefarmv1.AuditRecord
	for range 3 {
		var err error
		if last, err = first.Append(t.Context(), &imagefarmv1.AuditRecord{Actor: "controller"}); err != nil {
			t.Fatal(err)
		}
	}
	next, err := openLog(t, js).Append(t.Context(), &imagefarmv1.AuditRecord{Actor: "controller"})
	if err != nil {
		t.Fatal(err)
	}
	if next.GetSequence() != 4 || next.GetPrevHash() != last.GetHash() {
		t.Errorf("after a reopen, record %d with prev_hash %s; want 4 after %s", next.GetSequence(), next.GetPrevHash(), last.GetHash())
	}
	readAll(t, first)
}

func TestReadFromATime(t *testing.T) {
	js := newJS(t)
	l := openLog(t, js)
	for i := range 4 {
		if _, err := l.Append(t.Context(), &imagefarmv1.AuditRecord{Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	recs := readAll(t, l)
	tests := []struct {
		since time.Time
		limit int
		want  []uint64
	}{
		{time.Time{}, 0, []uint64{1, 2, 3, 4}},
		{time.Time{}, 2, []uint64{1, 2}},
		{recs[2].GetTime().AsTime(), 0, []uint64{3, 4}},
		{time.Now().Add(time.Hour), 0, nil},
	}
	for _, tt := range tests {
		var got []uint64
		err := l.Read(t.Context(), tt.since, tt.limit, func(r *imagefarmv1.AuditRecord) error {
			got = append(got, r.GetSequence())
			return nil
		})
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Read(%v, %d) = %v, %v; want %v", tt.since, tt.limit, got, err, tt.want)
		}
	}
}

func TestStreamRefusesDeleteAndPurge(t *testing.T) {
	js := newJS(t)
	l := openLog(t, js)
	if _, err := l.Append(t.Context(), &imagefarmv1.AuditRecord{Actor: "controller"}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), audit.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(t.Context(), 1); err == nil {
		t.Error("DeleteMsg of an audit record succeeded")
	}
	if err := st.Purge(t.Context()); err == nil {
		t.Error("Purge of the audit stream succeeded")
	}
	cfg := st.CachedInfo().Config
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.UpdateStream(t.Context(), cfg); err == nil {
		t.Error("lifting deny_delete and deny_purge succeeded")
	}
}
