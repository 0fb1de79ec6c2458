package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// publishAttempts bounds how often one append is tried before the change is
// left pending; the same message id makes every retry safe.
const publishAttempts = 3

// pendingEvent is an encoded event ready to publish.
type pendingEvent struct {
	subject string
	msgID   string
	data    []byte
}

// eventLog appends events and keeps, per record, the event of the last
// change whose append failed, so it goes out before the record's next one.
type eventLog struct {
	js      jetstream.JetStream
	mu      sync.Mutex
	pending map[string]pendingEvent // by record id
}

// Append adds ev to the events stream and returns its revision. msgID makes
// the append idempotent: appending again with the same id within
// Config.DuplicateWindow stores nothing and returns the first revision. The
// store's own ids are "<bucket>/<key>/<kv revision>" and start with
// "imagefarm-"; choose others. ev's revision is ignored: the stream sets it.
// Create and Update methods append their events themselves; Append is for
// events that are not the change of a stored record.
func (s *Store) Append(ctx context.Context, ev *imagefarmv1.JobEvent, msgID string) (uint64, error) {
	if msgID == "" {
		return 0, errors.New("append event: empty message id")
	}
	p, err := encodeEvent(ev, msgID)
	if err != nil {
		return 0, err
	}
	return s.log.publish(ctx, p)
}

// encodeEvent checks that ev names a valid job and encodes it for its
// job's subject.
func encodeEvent(ev *imagefarmv1.JobEvent, msgID string) (pendingEvent, error) {
	jobID := ev.GetJob().GetId()
	if ev.GetTask() != nil {
		jobID = ev.GetTask().GetJobId()
	}
	if _, err := jobKey(jobID); err != nil {
		return pendingEvent{}, fmt.Errorf("append event: %w", err)
	}
	ev = proto.CloneOf(ev)
	ev.Revision = 0
	if ev.GetJob() != nil {
		ev.GetJob().Revision = 0
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return pendingEvent{}, fmt.Errorf("encode event: %w", err)
	}
	return pendingEvent{subject: EventsSubjectPrefix + jobID, msgID: msgID, data: data}, nil
}

// publish appends p, retrying a few times: an append whose acknowledgement
// was lost may well be stored, and the message id keeps it single.
func (l *eventLog) publish(ctx context.Context, p pendingEvent) (uint64, error) {
	var err error
	pause := wait.Backoff{Min: 200 * time.Millisecond, Max: time.Second}
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		var ack *jetstream.PubAck
		ack, err = l.js.PublishMsg(ctx, &nats.Msg{Subject: p.subject, Data: p.data},
			jetstream.WithMsgID(p.msgID), jetstream.WithExpectStream(EventsStream))
		if err == nil {
			return ack.Sequence, nil
		}
		if attempt < publishAttempts {
			if !pause.Wait(ctx) {
				break
			}
		}
	}
	return 0, fmt.Errorf("append event %s: %w", p.msgID, err)
}

// announce appends the event of a change just stored under msgID, and keeps
// it pending for the record if that fails. The caller holds the record's
// lock.
func (l *eventLog) announce(ctx context.Context, recordID, msgID string, ev *imagefarmv1.JobEvent) error {
	p, err := encodeEvent(ev, msgID)
	if err == nil {
		_, err = l.publish(ctx, p)
	}
	if err != nil {
		l.mu.Lock()
		l.pending[recordID] = p
		l.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrEventPending, err)
	}
	return nil
}

// flush appends the record's pending event, if any. The caller holds the
// record's lock.
func (l *eventLog) flush(ctx context.Context, recordID string) error {
	l.mu.Lock()
	p, ok := l.pending[recordID]
	l.mu.Unlock()
	if !ok {
		return nil
	}
	if _, err := l.publish(ctx, p); err != nil {
		return fmt.Errorf("%w: %w", ErrEventPending, err)
	}
	l.mu.Lock()
	delete(l.pending, recordID)
	l.mu.Unlock()
	return nil
}

// pendingIDs returns the records that have a pending event.
func (l *eventLog) pendingIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.pending))
	for id := range l.pending {
		ids = append(ids, id)
	}
	return ids
}

// msgID is the message id of the event that announces a record's change to
// KV revision rev: unique per change, and the same however often the
// append is retried, by this process or by Reconcile in another.
func msgID(recordID string, rev uint64) string {
	return recordID + "/" + strconv.FormatUint(rev, 10)
}

// decodeEvent decodes a stored event and gives it, and its job snapshot,
// the message's stream sequence as revision.
func decodeEvent(m jetstream.Msg) (*imagefarmv1.JobEvent, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("event metadata: %w", err)
	}
	ev := &imagefarmv1.JobEvent{}
	if err := proto.Unmarshal(m.Data(), ev); err != nil {
		return nil, fmt.Errorf("decode event %d: %w", meta.Sequence.Stream, err)
	}
	ev.Revision = meta.Sequence.Stream
	if j := ev.GetJob(); j != nil {
		j.Revision = ev.Revision
	}
	return ev, nil
}
