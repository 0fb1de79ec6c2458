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

// PolicyBucket is the JetStream KV bucket of the reset policy records.
const PolicyBucket = "imagefarm-reset-policies"

// Policies keeps the reset policy records, one key per scope and name:
// "pool.", "model." or "device." and the name in hex (a model has spaces,
// which no KV key may hold).
type Policies struct {
	kv jetstream.KeyValue
}

// OpenPolicies makes sure the bucket exists, kept by replicas servers.
func OpenPolicies(ctx context.Context, js jetstream.JetStream, replicas int) (*Policies, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: PolicyBucket,
		Description: "imagefarm reset policies: scope.hex(name) -> ResetPolicy", History: 5,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", PolicyBucket, err)
	}
	return &Policies{kv: kv}, nil
}

var scopeKeys = map[imagefarmv1.PolicyScope]string{
	imagefarmv1.PolicyScope_POLICY_SCOPE_POOL:   "pool",
	imagefarmv1.PolicyScope_POLICY_SCOPE_MODEL:  "model",
	imagefarmv1.PolicyScope_POLICY_SCOPE_DEVICE: "device",
}

func policyKey(scope imagefarmv1.PolicyScope, name string) string {
	return scopeKeys[scope] + "." + hex.EncodeToString([]byte(name))
}

// Get returns the record of a scope and name, or nil when there is none.
func (p *Policies) Get(ctx context.Context, scope imagefarmv1.PolicyScope, name string) (*imagefarmv1.ResetPolicy, error) {
	r, _, err := p.get(ctx, policyKey(scope, name))
	return r, err
}

func (p *Policies) get(ctx context.Context, key string) (*imagefarmv1.ResetPolicy, uint64, error) {
	e, err := p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read reset policy %s: %w", key, err)
	}
	r := &imagefarmv1.ResetPolicy{}
	if err := proto.Unmarshal(e.Value(), r); err != nil {
		return nil, 0, fmt.Errorf("decode reset policy %s: %w", key, err)
	}
	return r, e.Revision(), nil
}

// Update applies fn to the record of a scope and name (a blank one, state
// UNSPECIFIED, when there is none) and stores the result, retrying on a
// concurrent change. An error from fn changes nothing.
func (p *Policies) Update(ctx context.Context, scope imagefarmv1.PolicyScope, name string,
	fn func(*imagefarmv1.ResetPolicy) error) (*imagefarmv1.ResetPolicy, error) {
	if scopeKeys[scope] == "" {
		return nil, fmt.Errorf("reset policy scope %v: want pool, model or device: %w", scope, ErrInvalid)
	}
	key := policyKey(scope, name)
	for {
		r, rev, err := p.get(ctx, key)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = &imagefarmv1.ResetPolicy{}
		}
		if err := fn(r); err != nil {
			return nil, err
		}
		r.Scope, r.Name = scope, name
		err = putRevision(ctx, p.kv, key, r, rev)
		if err == nil {
			return r, nil
		}
		if !isConflict(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// List returns every record, by scope then name.
func (p *Policies) List(ctx context.Context) ([]*imagefarmv1.ResetPolicy, error) {
	lister, err := p.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list reset policies: %w", err)
	}
	var out []*imagefarmv1.ResetPolicy
	for k := range lister.Keys() {
		r, _, err := p.get(ctx, k)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *imagefarmv1.ResetPolicy) int {
		return cmp.Or(cmp.Compare(a.GetScope(), b.GetScope()), strings.Compare(a.GetName(), b.GetName()))
	})
	return out, nil
}

// Effective is the policy that decides for device d: its own record, else
// its model's, else its pool's (the most specific that exists); with none,
// reset is off.
func (p *Policies) Effective(ctx context.Context, d *imagefarmv1.Device) (*imagefarmv1.EffectiveResetPolicy, error) {
	for _, s := range []struct {
		scope imagefarmv1.PolicyScope
		name  string
		what  string
	}{
		{imagefarmv1.PolicyScope_POLICY_SCOPE_DEVICE, d.GetId(), "the device's own policy"},
		{imagefarmv1.PolicyScope_POLICY_SCOPE_MODEL, d.GetModel(), fmt.Sprintf("the policy of model %q", d.GetModel())},
		{imagefarmv1.PolicyScope_POLICY_SCOPE_POOL, d.GetPool(), fmt.Sprintf("the policy of pool %q", d.GetPool())},
	} {
		if s.name == "" {
			continue
		}
		r, err := p.Get(ctx, s.scope, s.name)
		if err != nil {
			return nil, err
		}
		switch r.GetState() {
		case imagefarmv1.ResetPermission_RESET_PERMISSION_ALLOW:
			return &imagefarmv1.EffectiveResetPolicy{Allowed: true, DecidedBy: r, Reason: "allowed by " + s.what}, nil
		case imagefarmv1.ResetPermission_RESET_PERMISSION_DENY:
			return &imagefarmv1.EffectiveResetPolicy{DecidedBy: r, Reason: "denied by " + s.what}, nil
		}
	}
	return &imagefarmv1.EffectiveResetPolicy{Reason: "off: no policy allows it (reset is off by default)"}, nil
}

// putRevision stores m at key: created when rev is 0, else only over
// revision rev (a conflict otherwise, see isConflict).
func putRevision(ctx context.Context, kv jetstream.KeyValue, key string, m proto.Message, rev uint64) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if rev == 0 {
		_, err = kv.Create(ctx, key, v)
	} else {
		_, err = kv.Update(ctx, key, v, rev)
	}
	if err != nil && !isConflict(err) {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return err
}
