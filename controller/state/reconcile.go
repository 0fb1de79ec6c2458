package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// change is a job or task write found in a bucket's stream.
type change struct {
	kv       jetstream.KeyValue
	recordID string
	key      string
	rev      uint64
	at       time.Time
	ev       *imagefarmv1.JobEvent
}

// Reconcile appends the events of stored changes that have none: changes
// whose append failed in this process (ErrEventPending), and changes a
// crashed controller stored but did not get to announce. It looks for the
// latter from Config.ReconcileWindow before the newest event on, compares
// the job and task writes since then with the events' message ids, and
// appends what is missing, with the same message id the lost append had.
// A change already overwritten by a later one is skipped: the later one
// carries the record's state. New runs it; run it again after
// ErrEventPending. It returns how many events it appended.
func (s *Store) Reconcile(ctx context.Context) (int, error) {
	n, err := s.flushPending(ctx)
	if err != nil {
		return n, err
	}
	from, err := s.reconcileStart(ctx)
	if err != nil {
		return n, err
	}
	// Clocks of a cluster's servers differ a little; look a bit further
	// back for events than for changes.
	seen, err := s.eventIDsSince(ctx, from.Add(-s.cfg.ReconcileWindow))
	if err != nil {
		return n, err
	}
	changes, err := s.jobs.changesSince(ctx, from)
	if err != nil {
		return n, err
	}
	tasks, err := s.tasks.changesSince(ctx, from)
	if err != nil {
		return n, err
	}
	changes = append(changes, tasks...)
	slices.SortStableFunc(changes, func(a, b change) int { return a.at.Compare(b.at) })
	for _, c := range changes {
		if seen[msgID(c.recordID, c.rev)] {
			continue
		}
		done, err := s.reannounce(ctx, c)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// flushPending appends every event this process left pending.
func (s *Store) flushPending(ctx context.Context) (int, error) {
	n := 0
	for _, id := range s.log.pendingIDs() {
		unlock := s.locks.lock(id)
		err := s.log.flush(ctx, id)
		unlock()
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// reconcileStart is where changes without events can start: a little before
// the newest event, or before now if the stream is empty.
func (s *Store) reconcileStart(ctx context.Context) (time.Time, error) {
	info, err := s.events.Info(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("events stream info: %w", err)
	}
	last := info.State.LastTime
	if info.State.LastSeq == 0 || last.IsZero() {
		last = time.Now()
	}
	return last.Add(-s.cfg.ReconcileWindow), nil
}

// eventIDsSince returns the message ids of the events stored since from.
func (s *Store) eventIDsSince(ctx context.Context, from time.Time) (map[string]bool, error) {
	ids := map[string]bool{}
	err := scanStream(ctx, s.js, EventsStream, from, true, func(m jetstream.Msg) error {
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != "" {
			ids[id] = true
		}
		return nil
	})
	return ids, err
}

// changesSince returns the bucket's writes since from, older revisions
// included; reannounce skips those a later write has overwritten.
func (k *kind[T]) changesSince(ctx context.Context, from time.Time) ([]change, error) {
	prefix := "$KV." + k.kv.Bucket() + "."
	var out []change
	err := scanStream(ctx, k.s.js, "KV_"+k.kv.Bucket(), from, false, func(m jetstream.Msg) error {
		if m.Headers().Get("KV-Operation") != "" { // a delete or purge marker
			return nil
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("change metadata: %w", err)
		}
		key := strings.TrimPrefix(m.Subject(), prefix)
		v, err := k.decode(m.Data())
		if err != nil {
			return fmt.Errorf("%s %s: %w", k.kv.Bucket(), key, err)
		}
		out = append(out, change{kv: k.kv, recordID: k.recordID(key), key: key, rev: meta.Sequence.Stream,
			at: meta.Timestamp, ev: k.event(v, neverUpdated(v))})
		return nil
	})
	return out, err
}

// neverUpdated reports whether a record is as it was created, which
// stampTimes marks by an update time equal to the create time.
func neverUpdated(v proto.Message) bool {
	t, ok := v.(interface {
		GetCreateTime() *timestamppb.Timestamp
		GetUpdateTime() *timestamppb.Timestamp
	})
	return ok && proto.Equal(t.GetCreateTime(), t.GetUpdateTime())
}

// reannounce appends c's event if its record is still at c: a live writer
// may have moved it on since the scan, and then its own event tells the
// record's state.
func (s *Store) reannounce(ctx context.Context, c change) (bool, error) {
	unlock := s.locks.lock(c.recordID)
	defer unlock()
	e, err := c.kv.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s: %w", c.recordID, err)
	}
	if e.Revision() != c.rev {
		return false, nil
	}
	return true, s.log.announce(ctx, c.recordID, msgID(c.recordID, c.rev), c.ev)
}

// scanStream calls fn with every message of stream stored since from, and
// returns once it has seen the last one that was there when it started.
func scanStream(ctx context.Context, js jetstream.JetStream, stream string, from time.Time, headersOnly bool, fn func(jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &from,
		HeadersOnly:   headersOnly,
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", stream, err)
	}
	defer dropConsumer(ctx, js, cons)
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("scan %s: %w", stream, err)
	}
	defer it.Stop()
	for {
		m, err := nextWithin(ctx, it, 2*time.Second)
		if errors.Is(err, errIdle) {
			// The messages still counted as pending were dropped (max age)
			// after the consumer counted them.
			return nil
		}
		if err != nil {
			return fmt.Errorf("scan %s: %w", stream, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if meta, err := m.Metadata(); err != nil || meta.NumPending == 0 {
			return err
		}
	}
}

var errIdle = errors.New("no message")

// nextWithin returns the iterator's next message, or errIdle if none came
// within d.
func nextWithin(ctx context.Context, it jetstream.MessagesContext, d time.Duration) (jetstream.Msg, error) {
	nctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	m, err := it.Next(jetstream.NextContext(nctx))
	if err != nil && ctx.Err() == nil && nctx.Err() != nil {
		return nil, errIdle
	}
	return m, err
}
