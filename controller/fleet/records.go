package fleet

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// records is one bucket of proto records with optimistic writes.
type records[R proto.Message] struct {
	kv    jetstream.KeyValue
	fresh func() R
}

func openRecords[R proto.Message](ctx context.Context, js jetstream.JetStream, bucket, desc string, replicas int,
	fresh func() R) (*records[R], error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Description: desc, History: 5,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	return &records[R]{kv: kv, fresh: fresh}, nil
}

func (s *records[R]) get(ctx context.Context, key string) (R, uint64, error) {
	var zero R
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return zero, 0, ErrNotFound
	}
	if err != nil {
		return zero, 0, fmt.Errorf("read %s: %w", key, err)
	}
	r := s.fresh()
	if err := proto.Unmarshal(e.Value(), r); err != nil {
		return zero, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return r, e.Revision(), nil
}

func (s *records[R]) list(ctx context.Context) ([]R, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.kv.Bucket(), err)
	}
	var out []R
	for k := range lister.Keys() {
		r, _, err := s.get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// update applies fn to the record at key (a fresh one when there is none)
// and stores the result, retrying from a fresh read when another writer
// got there first, and returns what it stored. An error from fn stores
// nothing and is returned as it is.
func (s *records[R]) update(ctx context.Context, key string, fn func(R) error) (R, error) {
	var zero R
	for {
		r, rev, err := s.get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			r, rev, err = s.fresh(), 0, nil
		}
		if err != nil {
			return zero, err
		}
		if err := fn(r); err != nil {
			return zero, err
		}
		v, err := proto.Marshal(r)
		if err != nil {
			return zero, fmt.Errorf("encode %s: %w", key, err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, v)
		} else {
			_, err = s.kv.Update(ctx, key, v, rev)
		}
		if err == nil {
			return r, nil
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return zero, fmt.Errorf("store %s: %w", key, err)
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
	}
}
