package devices

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Bucket is the JetStream KV bucket of the device records.
const Bucket = "imagefarm-devices"

// ErrNotFound is a device the farm does not know.
var ErrNotFound = errors.New("devices: no such device")

// Store keeps device records in a KV bucket, keyed by device id, and
// finds them by MAC and serial through an index (index.go).
type Store struct {
	kv    jetstream.KeyValue
	index jetstream.KeyValue
}

// indexVersion is the index's marker key: the index was built from every
// record once, so an Open need not do it again.
const indexVersion = "version"

// Open makes sure the buckets exist, kept by replicas servers, and indexes
// the records written before the index was.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket,
		Description: "imagefarm devices: device id -> Device", History: 5, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", Bucket, err)
	}
	index, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: IndexBucket,
		Description: "imagefarm devices by MAC and serial: mac.HEX.ID, serial.SHA256.ID", History: 1, Storage: jetstream.FileStorage,
		Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", IndexBucket, err)
	}
	s := &Store{kv: kv, index: index}
	if _, err := index.Get(ctx, indexVersion); errors.Is(err, jetstream.ErrKeyNotFound) {
		if err := s.reindex(ctx); err != nil {
			return nil, err
		}
		if _, err := index.Put(ctx, indexVersion, []byte("1")); err != nil {
			return nil, fmt.Errorf("mark bucket %s built: %w", IndexBucket, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read bucket %s: %w", IndexBucket, err)
	}
	return s, nil
}

// Get returns the device with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*imagefarmv1.Device, error) {
	d, _, err := s.get(ctx, id)
	return d, err
}

func (s *Store) get(ctx context.Context, id string) (*imagefarmv1.Device, uint64, error) {
	if !validID(id) {
		return nil, 0, fmt.Errorf("device %q: %w", cut(id), ErrNotFound)
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read device %s: %w", id, err)
	}
	d := &imagefarmv1.Device{}
	if err := proto.Unmarshal(e.Value(), d); err != nil {
		return nil, 0, fmt.Errorf("decode device %s: %w", id, err)
	}
	return d, e.Revision(), nil
}

// validID reports whether id has the shape ID gives: a lowercase UUID, or
// "sn-" and 20 lowercase hex digits. Nothing else is a key of the bucket.
func validID(id string) bool {
	if rest, ok := strings.CutPrefix(id, "sn-"); ok {
		_, err := hex.DecodeString(rest)
		return err == nil && len(rest) == 20 && strings.ToLower(rest) == rest
	}
	return normalUUID(id) == id && id != ""
}

// Update applies fn to the device with id (a blank one with that id when
// the farm does not know it yet) and stores the result, retrying on a
// concurrent change, and returns what it stored. An error from fn changes
// nothing and is returned as it is.
func (s *Store) Update(ctx context.Context, id string, fn func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error) {
	for {
		d, rev, err := s.get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			d, rev, err = &imagefarmv1.Device{Id: id}, 0, nil
		}
		if err != nil {
			return nil, err
		}
		var before *imagefarmv1.Device
		if rev != 0 {
			before = proto.CloneOf(d)
		}
		if err := fn(d); err != nil {
			return nil, err
		}
		d.Id = id
		if err := s.addKeys(ctx, before, d); err != nil {
			return nil, err
		}
		err = putRevision(ctx, s.kv, id, d, rev)
		if err == nil {
			return d, s.dropKeys(ctx, before, d)
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("device: %w", err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// UpdateIfKnown is Update for a device the farm knows: ErrNotFound otherwise.
func (s *Store) UpdateIfKnown(ctx context.Context, id string, fn func(*imagefarmv1.Device) error) (*imagefarmv1.Device, error) {
	return s.Update(ctx, id, func(d *imagefarmv1.Device) error {
		if d.GetSerial() == "" && d.GetSmbiosUuid() == "" {
			return fmt.Errorf("device %s: %w", id, ErrNotFound)
		}
		return fn(d)
	})
}

// List returns every device, by serial then id.
func (s *Store) List(ctx context.Context) ([]*imagefarmv1.Device, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	var out []*imagefarmv1.Device
	for k := range lister.Keys() {
		d, err := s.Get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *imagefarmv1.Device) int {
		return cmp.Or(cmp.Compare(a.GetSerial(), b.GetSerial()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return out, nil
}

// Find returns the devices that what names: by id, by serial, or by MAC,
// by serial then id. It reads the records the index names, never every
// record.
func (s *Store) Find(ctx context.Context, what string) ([]*imagefarmv1.Device, error) {
	out, err := s.BySerial(ctx, what)
	if err != nil {
		return nil, err
	}
	if _, err := NormalizeMAC(what); err == nil {
		byMAC, err := s.ByMAC(ctx, what)
		if err != nil {
			return nil, err
		}
		out = append(out, byMAC...)
	}
	if validID(what) {
		d, err := s.Get(ctx, what)
		if err == nil {
			out = append(out, d)
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b *imagefarmv1.Device) int {
		return cmp.Or(cmp.Compare(a.GetSerial(), b.GetSerial()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return slices.CompactFunc(out, func(a, b *imagefarmv1.Device) bool { return a.GetId() == b.GetId() }), nil
}

// isConflict reports whether a KV write lost to another writer.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
