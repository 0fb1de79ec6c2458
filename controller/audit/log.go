package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Names of the JetStream stream that holds the trail and of its subject.
const (
	Stream  = "IMAGEFARM_AUDIT"
	Subject = "imagefarm.audit"
)

// ErrUnavailable means a record could not be stored before the caller's
// context ended: NATS is away.
var ErrUnavailable = errors.New("audit: trail unavailable")

// ErrUndecodable means a message in the audit stream is not an
// AuditRecord: something other than a Log published it.
var ErrUndecodable = errors.New("audit: message is not an audit record")

// Config says how the audit stream is set up. The zero value keeps every
// record for ever on a single server.
type Config struct {
	// Replicas is how many servers keep the stream: 1 (the default) for a
	// single server, 3 for a production cluster.
	Replicas int
	// MaxAge, when set, is how long records are kept; 0 keeps them for
	// ever. Once records expire, the chain is checked from the oldest one
	// kept.
	MaxAge time.Duration
}

// Log appends records to the audit trail and reads them back. It is safe
// for concurrent use; appends are serialized.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream

	mu       sync.Mutex // held by the one append in flight
	lastSeq  uint64     // the chain's last record as this Log last saw it
	lastHash string
}

// Open creates the audit stream, or updates it to cfg, and reads its last
// record so that appends continue the chain.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	if cfg.Replicas < 0 || cfg.MaxAge < 0 {
		return nil, errors.New("audit config: negative replicas or max age")
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "imagefarm audit trail: hash-chained AuditRecords; the stream sequence is the record's",
		Subjects:    []string{Subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		DenyDelete:  true,
		DenyPurge:   true,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", Stream, err)
	}
	l := &Log{js: js, stream: st}
	if err := l.loadLast(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// loadLast reads where the chain ends now.
func (l *Log) loadLast(ctx context.Context) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit stream info: %w", err)
	}
	last := info.State.LastSeq
	if last == 0 {
		l.lastSeq, l.lastHash = 0, ""
		return nil
	}
	m, err := l.stream.GetMsg(ctx, last)
	if errors.Is(err, jetstream.ErrMsgNotFound) { // expired (MaxAge): the chain goes on from its sequence
		l.lastSeq, l.lastHash = last, ""
		return nil
	}
	if err != nil {
		return fmt.Errorf("read audit record %d: %w", last, err)
	}
	rec, err := decode(m.Data, last)
	if err != nil {
		return err
	}
	hash, err := Hash(rec)
	if err != nil {
		return err
	}
	l.lastSeq, l.lastHash = last, hash
	return nil
}

// Append chains rec after the last record and stores it, retrying until it
// is stored or ctx ends, and returns it as stored: with its sequence,
// hashes and, if rec had none, the time now.
func (l *Log) Append(ctx context.Context, rec *imagefarmv1.AuditRecord) (*imagefarmv1.AuditRecord, error) {
	rec = proto.CloneOf(rec)
	if rec.Time == nil {
		rec.Time = timestamppb.Now()
	}
	if _, err := Hash(rec); err != nil { // would never be stored, however often tried
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	pause := wait.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for {
		before := l.lastSeq
		err := l.publish(ctx, rec)
		if err == nil {
			return rec, nil
		}
		// Another writer appended first, NATS is away, or the record was
		// stored and only its acknowledgement lost: see where the chain
		// ends now before trying again.
		if lerr := l.loadLast(ctx); lerr == nil && l.lastSeq == rec.Sequence && l.lastHash == rec.Hash {
			return rec, nil
		}
		if l.lastSeq != before {
			continue // chain after the other writer's record, at once
		}
		if !pause.Wait(ctx) {
			return nil, fmt.Errorf("append audit record: %w: %w", ErrUnavailable, err)
		}
	}
}

// publish stores rec as the record after the last one this Log knows of,
// if that is still the stream's last.
func (l *Log) publish(ctx context.Context, rec *imagefarmv1.AuditRecord) error {
	rec.Sequence, rec.PrevHash, rec.Hash = l.lastSeq+1, l.lastHash, ""
	hash, err := Hash(rec)
	if err != nil {
		return err
	}
	rec.Hash = hash
	data, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	if _, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: Subject, Data: data},
		jetstream.WithExpectStream(Stream), jetstream.WithExpectLastSequence(l.lastSeq)); err != nil {
		return err
	}
	l.lastSeq, l.lastHash = rec.Sequence, rec.Hash
	return nil
}

// Read calls fn with the records, in order, from the first one made at or
// after since (the zero time: from the first one kept), up to the last one
// stored when Read began, and at most limit of them (0: no limit). It stops
// at fn's first error and returns it.
func (l *Log) Read(ctx context.Context, since time.Time, limit int, fn func(*imagefarmv1.AuditRecord) error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	// An ordered consumer is ephemeral: the server drops it soon after the
	// read ends.
	cons, err := l.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read audit records: %w", err)
	}
	n := cons.CachedInfo().NumPending // what is stored now, from the start asked for
	if limit > 0 {
		n = min(n, uint64(limit))
	}
	if n == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read audit records: %w", err)
	}
	defer it.Stop()
	for range n {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read audit records: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read audit records: %w", err)
		}
		rec, err := decode(m.Data(), meta.Sequence.Stream)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func decode(data []byte, seq uint64) (*imagefarmv1.AuditRecord, error) {
	rec := &imagefarmv1.AuditRecord{}
	if err := proto.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("message %d of %s: %w: %w", seq, Stream, ErrUndecodable, err)
	}
	return rec, nil
}
