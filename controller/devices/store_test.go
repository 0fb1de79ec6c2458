package devices

import (
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

func openStore(t *testing.T) (*Store, jetstream.JetStream) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

const (
	idA = "11111111-2222-3333-4444-555555555555"
	idB = "11111111-2222-3333-4444-666666666666"
)

func put(t *testing.T, s *Store, id, serial string, macs ...string) {
	t.Helper()
	_, err := s.Update(t.Context(), id, func(d *imagefarmv1.Device) error {
		d.Serial, d.Macs = serial, macs
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(ds []*imagefarmv1.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.GetId())
	}
	return out
}

// TestFindReadsOnlyTheIndexedRecords: Find by MAC, serial and id reads the
// records the index names and never every record: a record nobody can
// decode beside them, which List trips on, does not disturb it. A MAC
// moved from one device to another is found on the second only, and a
// serial changed is found under its new value only.
func TestFindReadsOnlyTheIndexedRecords(t *testing.T) {
	s, _ := openStore(t)
	ctx := t.Context()
	put(t, s, idA, "SN-A", "52:54:00:00:00:0a", "52:54:00:00:00:01")
	put(t, s, idB, "SN-B", "52:54:00:00:00:0b")
	if _, err := s.kv.Put(ctx, "22222222-2222-3333-4444-555555555555", []byte("\xff not a device")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx); err == nil {
		t.Fatal("List read the undecodable record without an error: the test proves nothing")
	}
	put(t, s, idB, "SN-B2", "52:54:00:00:00:0b", "52:54:00:00:00:01")
	put(t, s, idA, "SN-A", "52:54:00:00:00:0a")
	for what, want := range map[string][]string{
		"52:54:00:00:00:0a": {idA}, "52-54-00-00-00-01": {idB}, "SN-A": {idA}, "SN-B2": {idB}, "SN-B": nil, idB: {idB},
		"52:54:00:00:00:99": nil, "nothing": nil,
	} {
		got, err := s.Find(ctx, what)
		if err != nil {
			t.Fatalf("Find(%q): %v", what, err)
		}
		if !slices.Equal(ids(got), want) {
			t.Errorf("Find(%q) = %v, want %v", what, ids(got), want)
		}
	}
}

// TestOpenIndexesEarlierRecords: records written before the index existed
// (a farm upgraded) are found by MAC and serial once the store opens.
func TestOpenIndexesEarlierRecords(t *testing.T) {
	s, js := openStore(t)
	ctx := t.Context()
	put(t, s, idA, "SN-A", "52:54:00:00:00:0a")
	if err := js.DeleteKeyValue(ctx, IndexBucket); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"52:54:00:00:00:0a", "SN-A"} {
		got, err := s.Find(ctx, what)
		if err != nil || !slices.Equal(ids(got), []string{idA}) {
			t.Errorf("Find(%q) after reopening = %v, %v, want [%s]", what, ids(got), err, idA)
		}
	}
}
