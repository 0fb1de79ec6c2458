package catalogrefs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the JetStream KV bucket of the refs.
const Bucket = "imagefarm-catalog-refs"

// refPrefix starts the key of every ref; the rest is the ref in unpadded
// base64url, as ':' and '+' are not valid in a key.
const refPrefix = "ref."

// seededKey is set once the bucket holds the whole catalog: until then
// the refs in it are only those reported since it was created.
const seededKey = "seeded"

// history is how many revisions of each ref the bucket keeps: with only
// one, a ref rewritten while All reads the bucket can end nats.go's watcher
// before it delivers that ref (as for controller/state's buckets).
const history = 5

// Known is a ref as the trail knows it: its digest and the bucket revision
// it was written at, which a conditional change names.
type Known struct {
	Digest   string
	Revision uint64
}

// Store keeps the refs in a KV bucket.
type Store struct {
	kv jetstream.KeyValue
}

// Open makes sure the bucket exists, kept by replicas servers, and returns
// its store.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket,
		Description: "imagefarm catalog refs the audit trail knows: ref -> manifest digest",
		History:     history, Storage: jetstream.FileStorage, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv}, nil
}

func key(ref string) string { return refPrefix + base64.RawURLEncoding.EncodeToString([]byte(ref)) }

// Set records that ref points at digest.
func (s *Store) Set(ctx context.Context, ref, digest string) error {
	if _, err := s.kv.PutString(ctx, key(ref), digest); err != nil {
		return fmt.Errorf("set ref %s: %w", ref, err)
	}
	return nil
}

// Delete records that ref is gone.
func (s *Store) Delete(ctx context.Context, ref string) error {
	if err := s.kv.Delete(ctx, key(ref)); err != nil {
		return fmt.Errorf("delete ref %s: %w", ref, err)
	}
	return nil
}

// Move points ref at digest, or deletes it when digest is empty, only if
// the ref is still as known says (a zero Revision: absent), so that a
// change reported meanwhile is not overwritten; otherwise it fails.
func (s *Store) Move(ctx context.Context, ref string, known Known, digest string) error {
	var err error
	switch {
	case digest == "":
		err = s.kv.Delete(ctx, key(ref), jetstream.LastRevision(known.Revision))
	case known.Revision == 0:
		_, err = s.kv.Create(ctx, key(ref), []byte(digest))
	default:
		_, err = s.kv.Update(ctx, key(ref), []byte(digest), known.Revision)
	}
	if err != nil {
		return fmt.Errorf("move ref %s to %q: %w", ref, digest, err)
	}
	return nil
}

// All returns every ref the bucket holds, and whether it was seeded.
func (s *Store) All(ctx context.Context) (map[string]Known, bool, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, false, fmt.Errorf("read refs: %w", err)
	}
	defer w.Stop()
	refs, seeded := map[string]Known{}, false
	for {
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("read refs: %w", ctx.Err())
		case e := <-w.Updates():
			if e == nil { // every current value delivered
				return refs, seeded, nil
			}
			if e.Key() == seededKey {
				seeded = true
				continue
			}
			enc, ok := strings.CutPrefix(e.Key(), refPrefix)
			b, err := base64.RawURLEncoding.DecodeString(enc)
			if !ok || err != nil {
				continue // not a ref's key: nothing this package wrote
			}
			refs[string(b)] = Known{Digest: string(e.Value()), Revision: e.Revision()}
		}
	}
}

// Seed adds every ref of refs (ref -> digest) that the bucket does not
// hold, keeping those reported meanwhile, and marks the bucket seeded.
func (s *Store) Seed(ctx context.Context, refs map[string]string) error {
	for ref, digest := range refs {
		if _, err := s.kv.Create(ctx, key(ref), []byte(digest)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("seed ref %s: %w", ref, err)
		}
	}
	if _, err := s.kv.PutString(ctx, seededKey, "1"); err != nil {
		return fmt.Errorf("mark refs seeded: %w", err)
	}
	return nil
}
