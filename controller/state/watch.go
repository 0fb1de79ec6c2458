package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Watch calls fn with every event of one job (or of all jobs when jobID is
// ""), in revision order: first the stored ones from fromRevision on, then
// new ones as they are appended, each once. fromRevision 0 means only
// events appended from now on. It returns a *RevisionTooOldError (matching
// ErrRevisionTooOld) when the stream no longer keeps fromRevision, an error
// wrapping ErrFutureRevision when fromRevision is past the next one, ctx's
// error when ctx is done, nil when fn returns ErrStopWatch, and fn's error
// otherwise.
//
// The events are read through an ordered consumer that starts at the
// revision and filters on the job's subject; the client library recreates
// it after the last delivered revision if it loses messages or the
// connection, so the stream of calls has no gap and no repeat.
func (s *Store) Watch(ctx context.Context, jobID string, fromRevision uint64, fn func(*imagefarmv1.JobEvent) error) error {
	subject := EventsSubjectPrefix + "*"
	if jobID != "" {
		key, err := jobKey(jobID)
		if err != nil {
			return err
		}
		subject = EventsSubjectPrefix + key
	}
	last, err := s.LastRevision(ctx)
	if err != nil {
		return err
	}
	start := fromRevision
	switch {
	case start == 0:
		start = last + 1
	case start > last+1: // a consumer would wait, silently, for revisions that may never come
		return fmt.Errorf("revision %d is past the last event %d; get the job and watch from its revision + 1: %w",
			start, last, ErrFutureRevision)
	}
	cons, err := s.events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return fmt.Errorf("watch events from %d: %w", start, err)
	}
	defer dropConsumer(ctx, s.js, cons)
	// Checked only now that the consumer exists: an event dropped between a
	// check and the consumer's start would otherwise be skipped silently.
	if err := s.checkKept(ctx, fromRevision); err != nil {
		return err
	}
	return deliver(ctx, cons, fn)
}

// checkKept fails when revision rev (0: none asked for) is older than the
// oldest event the stream keeps.
func (s *Store) checkKept(ctx context.Context, rev uint64) error {
	if rev == 0 {
		return nil
	}
	info, err := s.events.Info(ctx)
	if err != nil {
		return fmt.Errorf("events stream info: %w", err)
	}
	if rev < info.State.FirstSeq {
		return &RevisionTooOldError{Revision: rev, First: info.State.FirstSeq}
	}
	return nil
}

// deliver passes the consumer's events to fn until ctx is done or fn
// returns an error.
func deliver(ctx context.Context, cons jetstream.Consumer, fn func(*imagefarmv1.JobEvent) error) error {
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("watch events: %w", err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("watch events: %w", err)
		}
		ev, err := decodeEvent(m)
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			if errors.Is(err, ErrStopWatch) {
				return nil
			}
			return err
		}
	}
}

// dropConsumer deletes an ordered consumer now rather than leaving it to the
// server's inactivity timeout, so reconnecting clients do not pile up
// consumers. It runs when ctx may be done, hence its own short deadline.
func dropConsumer(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, info.Stream, info.Name) // best effort: the server drops it when idle anyway
}
