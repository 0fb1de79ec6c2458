package audit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/controller/audit"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// chained returns n records chained as a Log would chain them.
func chained(t *testing.T, n int) []*imagefarmv1.AuditRecord {
	t.Helper()
	var out []*imagefarmv1.AuditRecord
	prev := ""
	for i := 1; i <= n; i++ {
		rec := &imagefarmv1.AuditRecord{Sequence: uint64(i), Time: timestamppb.New(time.Unix(1_800_000_000, 0)), Actor: "peer:127.0.0.1:5000", PrevHash: prev,
			Action: imagefarmv1.AuditAction_AUDIT_ACTION_DRIVE_WRITTEN, NodeId: "n1", DriveSerial: "SN" + strings.Repeat("7", i),
			TaskState: imagefarmv1.TaskState_TASK_STATE_DONE}
		rehash(t, rec)
		prev = rec.Hash
		out = append(out, rec)
	}
	return out
}

func rehash(t *testing.T, rec *imagefarmv1.AuditRecord) {
	t.Helper()
	h, err := audit.Hash(rec)
	if err != nil {
		t.Fatal(err)
	}
	rec.Hash = h
}

// verify adds records to a new chain and returns the first error.
func verify(recs []*imagefarmv1.AuditRecord) (*audit.Chain, error) {
	var c audit.Chain
	for _, r := range recs {
		if err := c.Add(r); err != nil {
			return &c, err
		}
	}
	return &c, nil
}

func TestChainNamesTheFirstBrokenRecord(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(t *testing.T, recs []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord
		seq    uint64
		reason string
	}{
		{"field edited", func(t *testing.T, r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			r[2].DriveSerial = "SN-OTHER"
			return r
		}, 3, "its hash does not match its content: the record was edited"},
		{"field edited and rehashed", func(t *testing.T, r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			r[2].TaskState = imagefarmv1.TaskState_TASK_STATE_FAILED
			rehash(t, r[2])
			return r
		}, 4, "prev_hash does not match record 3: the log was edited"},
		{"record removed", func(t *testing.T, r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			return append(r[:2], r[3:]...)
		}, 4, "follows record 2: record 3 is missing"},
		{"records removed and the rest renumbered", func(t *testing.T, r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			r = append(r[:1], r[3:]...)
			for i, rec := range r {
				rec.Sequence = uint64(i + 1)
				rehash(t, rec)
			}
			return r
		}, 2, "prev_hash does not match record 1"},
		{"record repeated", func(t *testing.T, r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			return append(r[:3], r[2:]...)
		}, 3, "follows record 3"},
		{"first record has a prev_hash", func(t *testing.T, r []*imagefarmv1.AuditRecord) []*imagefarmv1.AuditRecord {
			r[0].PrevHash = r[1].Hash
			rehash(t, r[0])
			return r
		}, 1, "the first record has a prev_hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verify(tt.edit(t, chained(t, 5)))
			var be *audit.BrokenError
			if !errors.As(err, &be) || be.Sequence != tt.seq || !strings.Contains(be.Reason, tt.reason) {
				t.Fatalf("verify = %v, want record %d: %s", err, tt.seq, tt.reason)
			}
		})
	}
}

func TestChainOfIntactRecords(t *testing.T) {
	recs := chained(t, 5)
	c, err := verify(recs)
	if err != nil {
		t.Fatal(err)
	}
	if seq, hash := c.Last(); c.Count() != 5 || c.First() != 1 || seq != 5 || hash != recs[4].Hash {
		t.Errorf("chain: %d records from %d, last %d %s; want 5 from 1, last 5 %s", c.Count(), c.First(), seq, hash, recs[4].Hash)
	}
	// A trail whose oldest records expired is checked from the oldest kept.
	if c, err := verify(recs[2:]); err != nil || c.First() != 3 {
		t.Errorf("verify from record 3 = %v, first %d; want nil, 3", err, c.First())
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := chained(t, 1)[0]
	if h, _ := audit.Hash(base); base.Hash != h {
		t.Fatalf("Hash depends on the hash field: %s != %s", base.Hash, h)
	}
	fields := base.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Name() == "hash" {
			continue
		}
		rec := proto.CloneOf(base)
		m := rec.ProtoReflect()
		switch f.Kind() {
		case protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString(m.Get(f).String()+"x"))
		case protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(m.Get(f).Uint()+1))
		case protoreflect.EnumKind:
			m.Set(f, protoreflect.ValueOfEnum(m.Get(f).Enum()+1))
		case protoreflect.MessageKind: // time
			rec.Time.Nanos++
		default:
			t.Fatalf("field %s is a %v: the canonical form allows only scalars and the time", f.Name(), f.Kind())
		}
		if f.Cardinality() == protoreflect.Repeated || f.ContainingOneof() != nil {
			t.Errorf("field %s is repeated or in a oneof: the canonical form allows neither", f.Name())
		}
		if h, _ := audit.Hash(rec); h == base.Hash {
			t.Errorf("changing %s leaves the hash as it was", f.Name())
		}
	}
}
