package fleet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Buckets of the fleet records.
const (
	ModelBucket   = "imagefarm-models"
	RolloutBucket = "imagefarm-rollouts"
)

// ErrNotFound is a model or rollout the farm does not have.
var ErrNotFound = errors.New("fleet: not found")

// Store keeps models (keyed by a hash of their name) and rollouts (by id).
type Store struct {
	models   *records[*imagefarmv1.Model]
	rollouts *records[*imagefarmv1.Rollout]
}

// Open makes sure the buckets exist, kept by replicas servers.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	m, err := openRecords(ctx, js, ModelBucket, "imagefarm device models: hash of name -> Model", replicas,
		func() *imagefarmv1.Model { return &imagefarmv1.Model{} })
	if err != nil {
		return nil, err
	}
	r, err := openRecords(ctx, js, RolloutBucket, "imagefarm rollouts: id -> Rollout", replicas,
		func() *imagefarmv1.Rollout { return &imagefarmv1.Rollout{} })
	if err != nil {
		return nil, err
	}
	return &Store{models: m, rollouts: r}, nil
}

// ModelKey is the bucket key of the model named name: SMBIOS names hold
// spaces and punctuation no KV key may.
func ModelKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "m" + hex.EncodeToString(sum[:16])
}

// Model returns the model named exactly name, or ErrNotFound.
func (s *Store) Model(ctx context.Context, name string) (*imagefarmv1.Model, error) {
	m, _, err := s.models.get(ctx, ModelKey(name))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("model %q: %w", name, ErrNotFound)
	}
	return m, err
}

// Models returns every model, by name.
func (s *Store) Models(ctx context.Context) ([]*imagefarmv1.Model, error) {
	all, err := s.models.list(ctx)
	slices.SortFunc(all, func(a, b *imagefarmv1.Model) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return all, err
}

// WriteModel applies fn to the model named name (a blank one when there
// is none) and stores the result; see records.update.
func (s *Store) WriteModel(ctx context.Context, name string, fn func(*imagefarmv1.Model) error) (*imagefarmv1.Model, error) {
	return s.models.update(ctx, ModelKey(name), func(m *imagefarmv1.Model) error {
		if err := fn(m); err != nil {
			return err
		}
		m.Name = name
		return nil
	})
}

// Rollout returns the rollout with id, or ErrNotFound.
func (s *Store) Rollout(ctx context.Context, id string) (*imagefarmv1.Rollout, error) {
	if !validKey(id) {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	r, _, err := s.rollouts.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("rollout %s: %w", id, ErrNotFound)
	}
	return r, err
}

// Rollouts returns every rollout, newest first.
func (s *Store) Rollouts(ctx context.Context) ([]*imagefarmv1.Rollout, error) {
	all, err := s.rollouts.list(ctx)
	slices.SortFunc(all, func(a, b *imagefarmv1.Rollout) int {
		return cmp.Or(b.GetCreateTime().AsTime().Compare(a.GetCreateTime().AsTime()), cmp.Compare(b.GetId(), a.GetId()))
	})
	return all, err
}

// WriteRollout applies fn to the rollout with id (a blank one when there
// is none) and stores the result; see records.update.
func (s *Store) WriteRollout(ctx context.Context, id string, fn func(*imagefarmv1.Rollout) error) (*imagefarmv1.Rollout, error) {
	if !validKey(id) {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	return s.rollouts.update(ctx, id, func(r *imagefarmv1.Rollout) error {
		if err := fn(r); err != nil {
			return err
		}
		r.Id = id
		return nil
	})
}

// validKey reports whether id may be a bucket key: letters and digits.
func validKey(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}
