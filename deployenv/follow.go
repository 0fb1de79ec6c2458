package deployenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultFollowInterval is how often a Follower resolves its ref again.
const DefaultFollowInterval = time.Minute

// FollowConfig says which deploy environment to follow and what to do
// with each new version of it.
type FollowConfig struct {
	// Fetch names the environment (a channel, to follow it) and where its
	// versions are kept; each is fetched and verified as Fetch does.
	Fetch FetchConfig
	// Current is the digest of the version served now ("" for none).
	Current string
	// Interval is how often the ref is resolved again;
	// DefaultFollowInterval when 0.
	Interval time.Duration
	// Serve is given each new version once it is fetched and verified.
	Serve func(*Env) error
	// Log gets a line per new version and per failed check; nil is
	// slog.Default().
	Log *slog.Logger
}

// Follower keeps a boot service on the newest version of a deploy
// environment its ref names: when a channel moves, the version it points
// at is fetched, verified and served to the next boots, without a
// restart.
type Follower struct {
	cfg FollowConfig
}

// NewFollower checks cfg and returns a Follower ready to Run.
func NewFollower(cfg FollowConfig) (*Follower, error) {
	if cfg.Fetch.Catalog == nil || cfg.Serve == nil {
		return nil, errors.New("follow deploy environment: no catalog or nothing to serve with")
	}
	if cfg.Fetch.Ref.Digest != "" {
		return nil, fmt.Errorf("follow deploy environment %s: a digest names one version for ever: give NAME:CHANNEL to follow", cfg.Fetch.Ref)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultFollowInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Follower{cfg: cfg}, nil
}

// Run checks the ref every Interval until ctx is done. A check that fails
// (the store unreachable, a new version unsigned or damaged) is logged and
// the current version kept: the boots go on with what was verified.
func (f *Follower) Run(ctx context.Context) error {
	tick := time.NewTicker(f.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := f.check(ctx); err != nil && ctx.Err() == nil {
			f.cfg.Log.Error("deploy environment not updated: the boots go on with the current one", "ref", f.cfg.Fetch.Ref.String(),
				"current", f.cfg.Current, "err", err)
		}
	}
}

// check resolves the ref and, when it names another version, fetches it
// and serves it.
func (f *Follower) check(ctx context.Context) error {
	_, digest, err := f.cfg.Fetch.Catalog.Manifest(ctx, f.cfg.Fetch.Ref)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", f.cfg.Fetch.Ref, err)
	}
	if digest == f.cfg.Current {
		return nil
	}
	env, err := Fetch(ctx, f.cfg.Fetch)
	if err != nil {
		return err
	}
	if err := f.cfg.Serve(env); err != nil {
		return fmt.Errorf("serve deploy environment %s (%s): %w", f.cfg.Fetch.Ref, env.Digest, err)
	}
	f.cfg.Log.Info("deploy environment updated: the next boots get it", "ref", f.cfg.Fetch.Ref.String(), "digest", env.Digest,
		"previous", f.cfg.Current, "kernel", env.Info.KernelRelease)
	f.cfg.Current = env.Digest
	return nil
}
