package catalogrefs_test

import (
	"errors"
	"maps"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/imagefarm/imagefarm/controller/catalogrefs"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// open returns a refs store on a new NATS server, and its JetStream.
func open(t *testing.T) (*catalogrefs.Store, jetstream.JetStream) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := catalogrefs.Open(t.Context(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return st, js
}

// all returns the refs' digests and whether the bucket was seeded.
func all(t *testing.T, st *catalogrefs.Store) (map[string]catalogrefs.Known, bool) {
	t.Helper()
	refs, seeded, err := st.All(t.Context())
	if err != nil {
		t.Fatalf("All: %v", err)
	}
	return refs, seeded
}

func digests(refs map[string]catalogrefs.Known) map[string]string {
	out := map[string]string{}
	for ref, k := range refs {
		out[ref] = k.Digest
	}
	return out
}

// TestSetDeleteAll: refs with the characters a key cannot hold (':',
// '+', '/') come back from All as they were set, and a deleted one is
// gone.
func TestSetDeleteAll(t *testing.T) {
	st, _ := open(t)
	ctx := t.Context()
	if refs, seeded := all(t, st); len(refs) != 0 || seeded {
		t.Fatalf("All on a new bucket = %v, seeded %v, want nothing, false", refs, seeded)
	}
	want := map[string]string{"win11:24h2": "sha256:a", "win11:stable": "sha256:b", "x+y:1.0-rc/2": "sha256:c"}
	for ref, d := range want {
		if err := st.Set(ctx, ref, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Set(ctx, "win11:stable", "sha256:d"); err != nil {
		t.Fatal(err)
	}
	want["win11:stable"] = "sha256:d"
	if err := st.Delete(ctx, "x+y:1.0-rc/2"); err != nil {
		t.Fatal(err)
	}
	delete(want, "x+y:1.0-rc/2")
	if refs, _ := all(t, st); !maps.Equal(digests(refs), want) {
		t.Errorf("All = %v, want %v", digests(refs), want)
	}
}

// TestAllIgnoresForeignKeys: a key this package did not write (not
// "ref." and base64url) is skipped, not returned as a ref.
func TestAllIgnoresForeignKeys(t *testing.T) {
	st, js := open(t)
	kv, err := js.KeyValue(t.Context(), catalogrefs.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"other", "ref.a", "ref.=x", "ref"} {
		if _, err := kv.PutString(t.Context(), k, "x"); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	if err := st.Set(t.Context(), "a:1", "sha256:a"); err != nil {
		t.Fatal(err)
	}
	if refs, _ := all(t, st); !maps.Equal(digests(refs), map[string]string{"a:1": "sha256:a"}) {
		t.Errorf("All = %v, want only a:1", digests(refs))
	}
}

// TestMoveIsConditional: Move changes a ref only from the revision the
// caller knew (absent for a zero Revision), so a change reported since
// is never overwritten, and the refused move changes nothing.
func TestMoveIsConditional(t *testing.T) {
	st, _ := open(t)
	ctx := t.Context()
	if err := st.Move(ctx, "a:1", catalogrefs.Known{}, "sha256:a"); err != nil {
		t.Fatalf("Move from absent: %v", err)
	}
	known, _ := all(t, st)
	if err := st.Move(ctx, "a:1", catalogrefs.Known{}, "sha256:x"); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("Move of a present ref as if absent = %v, want ErrKeyExists", err)
	}
	// A report moves the ref after the watcher read it.
	if err := st.Set(ctx, "a:1", "sha256:b"); err != nil {
		t.Fatal(err)
	}
	if err := st.Move(ctx, "a:1", known["a:1"], "sha256:c"); err == nil {
		t.Errorf("Move from a stale revision = nil, want refused")
	}
	if err := st.Move(ctx, "a:1", known["a:1"], ""); err == nil {
		t.Errorf("Move (delete) from a stale revision = nil, want refused")
	}
	now, _ := all(t, st)
	if got := now["a:1"].Digest; got != "sha256:b" {
		t.Fatalf("a:1 after refused moves = %q, want the reported sha256:b", got)
	}
	if err := st.Move(ctx, "a:1", now["a:1"], "sha256:c"); err != nil {
		t.Errorf("Move from the current revision: %v", err)
	}
	now, _ = all(t, st)
	if err := st.Move(ctx, "a:1", now["a:1"], ""); err != nil {
		t.Errorf("Move (delete) from the current revision: %v", err)
	}
	if refs, _ := all(t, st); len(refs) != 0 {
		t.Errorf("All after the delete = %v, want nothing", digests(refs))
	}
}

// TestSeedKeepsReported: Seed adds the catalog's refs the bucket lacks,
// keeps those reported before it (the trail is newer than the scan), and
// marks the bucket seeded.
func TestSeedKeepsReported(t *testing.T) {
	st, _ := open(t)
	ctx := t.Context()
	if err := st.Set(ctx, "a:1", "sha256:reported"); err != nil {
		t.Fatal(err)
	}
	if err := st.Seed(ctx, map[string]string{"a:1": "sha256:scanned", "b:1": "sha256:b"}); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	refs, seeded := all(t, st)
	want := map[string]string{"a:1": "sha256:reported", "b:1": "sha256:b"}
	if !maps.Equal(digests(refs), want) || !seeded {
		t.Errorf("All after Seed = %v, seeded %v, want %v, true", digests(refs), seeded, want)
	}
	// Seeding again (a controller restarted mid-seed) is harmless.
	if err := st.Seed(ctx, map[string]string{"b:1": "sha256:other"}); err != nil {
		t.Fatalf("second Seed: %v", err)
	}
	if refs, _ := all(t, st); !maps.Equal(digests(refs), want) {
		t.Errorf("All after a second Seed = %v, want %v", digests(refs), want)
	}
}

// TestOpenKeepsRefs: opening the bucket again (a controller restart)
// keeps what it held.
func TestOpenKeepsRefs(t *testing.T) {
	st, js := open(t)
	if err := st.Seed(t.Context(), map[string]string{"a:1": "sha256:a"}); err != nil {
		t.Fatal(err)
	}
	again, err := catalogrefs.Open(t.Context(), js, 1)
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	if refs, seeded := all(t, again); !maps.Equal(digests(refs), map[string]string{"a:1": "sha256:a"}) || !seeded {
		t.Errorf("All after reopening = %v, seeded %v, want a:1, true", digests(refs), seeded)
	}
}
