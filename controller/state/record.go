package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/imagefarm/imagefarm/internal/wait"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// maxAttempts bounds the retries of an update that keeps losing the race for
// its record to other controllers; within one process writes to a record
// are serialized and never conflict.
const maxAttempts = 16

// writeMode says what a write expects of the record it writes.
type writeMode int

const (
	mustCreate writeMode = iota // fail with ErrExists if it exists
	mustExist                   // fail with ErrNotFound if it does not
	upsert                      // create it from seed if it does not
)

// kind is one bucket and what its records need on every write.
type kind[T proto.Message] struct {
	kv    jetstream.KeyValue
	s     *Store
	fresh func() T
	// key says under which key a record belongs, so that a write can refuse
	// an update that moved the record.
	key func(T) (string, error)
	// tidy clears fields that are derived on read and never stored, or
	// that the record's state rules out; nil if none.
	tidy func(T)
	// stamp sets the record's timestamps; nil if it has none.
	stamp func(prev, next T, created bool)
	// event is the event that announces a stored change; nil for records
	// without events.
	event func(next T, created bool) *imagefarmv1.JobEvent
}

// recordID names a record across buckets, for locks and message ids.
func (k *kind[T]) recordID(key string) string { return k.kv.Bucket() + "/" + key }

// get returns the record at key and its KV revision.
func (k *kind[T]) get(ctx context.Context, key string) (T, uint64, error) {
	var zero T
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return zero, 0, fmt.Errorf("%s %s: %w", k.kv.Bucket(), key, ErrNotFound)
	}
	if err != nil {
		return zero, 0, fmt.Errorf("get %s %s: %w", k.kv.Bucket(), key, err)
	}
	v, err := k.decode(e.Value())
	if err != nil {
		return zero, 0, fmt.Errorf("%s %s: %w", k.kv.Bucket(), key, err)
	}
	return v, e.Revision(), nil
}

func (k *kind[T]) decode(data []byte) (T, error) {
	v := k.fresh()
	if err := proto.Unmarshal(data, v); err != nil {
		var zero T
		return zero, fmt.Errorf("decode record: %w", err)
	}
	return v, nil
}

// write lets fn change the record at key and stores the result under the
// record's KV revision, retrying from a fresh read when another writer got
// there first, so no change is ever silently overwritten. When the record
// has events, the change's event is appended after the KV write (see
// doc.go for why in this order). Writes of one record are serialized in
// this process so that its events are appended in the order of its changes.
// seed fills in a new record's ids for upsert.
func (k *kind[T]) write(ctx context.Context, key string, mode writeMode, seed, fn func(T) error) (T, error) {
	var zero T
	id := k.recordID(key)
	unlock := k.s.locks.lock(id)
	defer unlock()
	// A change whose event failed earlier goes out before any later one.
	if err := k.s.log.flush(ctx, id); err != nil {
		return zero, err
	}
	// Racing writers' retries spread apart: jittered so that two losers
	// do not collide again.
	pause := wait.Backoff{Min: time.Millisecond, Max: 64 * time.Millisecond, Jitter: true}
	for attempt := 1; ; attempt++ {
		next, rev, created, err := k.tryWrite(ctx, key, mode, seed, fn)
		if isConflict(err) && attempt < maxAttempts {
			if !pause.Wait(ctx) {
				return zero, ctx.Err()
			}
			continue
		}
		if isConflict(err) {
			return zero, fmt.Errorf("write %s after %d attempts: %w: %w", id, attempt, ErrConflict, err)
		}
		if err != nil || rev == 0 || k.event == nil {
			return next, err
		}
		return next, k.s.log.announce(ctx, id, msgID(id, rev), k.event(next, created))
	}
}

// tryWrite is one read-modify-write. It returns the record as stored, the
// new KV revision (0 when nothing changed) and whether it was created.
func (k *kind[T]) tryWrite(ctx context.Context, key string, mode writeMode, seed, fn func(T) error) (T, uint64, bool, error) {
	var zero T
	cur, rev, err := k.get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound) && mode != mustExist:
		cur = k.fresh()
		if err := seed(cur); err != nil {
			return zero, 0, false, err
		}
	case err != nil:
		return zero, 0, false, err
	case mode == mustCreate:
		return zero, 0, false, fmt.Errorf("%s %s: %w", k.kv.Bucket(), key, ErrExists)
	}
	next := proto.CloneOf(cur)
	if err := k.apply(key, next, fn); err != nil {
		return zero, 0, false, err
	}
	if rev != 0 && proto.Equal(cur, next) {
		return cur, 0, false, nil
	}
	if k.stamp != nil {
		k.stamp(cur, next, rev == 0)
	}
	newRev, err := k.put(ctx, key, next, rev)
	if err != nil {
		return zero, 0, false, err
	}
	return next, newRev, rev == 0, nil
}

// apply runs fn on v and checks that v still belongs under key.
func (k *kind[T]) apply(key string, v T, fn func(T) error) error {
	if err := fn(v); err != nil {
		return err
	}
	if k.tidy != nil {
		k.tidy(v)
	}
	got, err := k.key(v)
	if err != nil {
		return err
	}
	if got != key {
		return fmt.Errorf("%s %s became %s: %w", k.kv.Bucket(), key, got, ErrIDChanged)
	}
	return nil
}

// put creates the key when rev is 0, else updates it if it is still at rev.
func (k *kind[T]) put(ctx context.Context, key string, v T, rev uint64) (uint64, error) {
	data, err := proto.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s %s: %w", k.kv.Bucket(), key, err)
	}
	if rev == 0 {
		rev, err = k.kv.Create(ctx, key, data)
	} else {
		rev, err = k.kv.Update(ctx, key, data, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("put %s %s: %w", k.kv.Bucket(), key, err)
	}
	return rev, nil
}

// delete removes the record at key; a missing record is not an error.
func (k *kind[T]) delete(ctx context.Context, key string) error {
	unlock := k.s.locks.lock(k.recordID(key))
	defer unlock()
	if err := k.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s %s: %w", k.kv.Bucket(), key, err)
	}
	return nil
}

// isConflict reports whether a KV write failed because the record was not
// at the revision read: someone else created or updated it meanwhile.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// scan calls fn with every record whose key matches filter (a KV key
// pattern; ">" for all). It reads the bucket through one ordered consumer
// rather than a get per key, so tens of thousands of records take one
// stream pass.
func (k *kind[T]) scan(ctx context.Context, filter string, fn func(T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := k.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("scan %s %s: %w", k.kv.Bucket(), filter, err)
	}
	defer func() {
		_ = w.Stop()
		// The watcher's delivery callback may be blocked handing us a live
		// update; reading until the watcher closes the channel lets it see
		// the subscription is gone and exit instead of leaking.
		for range w.Updates() {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("scan %s %s: watcher closed", k.kv.Bucket(), filter)
			}
			if e == nil { // every value present at the start was delivered
				return nil
			}
			v, err := k.decode(e.Value())
			if err != nil {
				return fmt.Errorf("%s %s: %w", k.kv.Bucket(), e.Key(), err)
			}
			if err := fn(v); err != nil {
				return err
			}
		}
	}
}

// list returns every record whose key matches filter.
func (k *kind[T]) list(ctx context.Context, filter string) ([]T, error) {
	var out []T
	err := k.scan(ctx, filter, func(v T) error {
		out = append(out, v)
		return nil
	})
	return out, err
}
