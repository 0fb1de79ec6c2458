package wire

import (
	"context"
	"fmt"
	"time"

	"github.com/imagefarm/imagefarm/internal/ident"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream that holds assignments and cancels
// until the node they are for acks them.
const StreamName = "IMAGEFARM_ASSIGN"

const (
	subjectPrefix  = "imagefarm.assign."
	consumerPrefix = "imager-"

	defaultDuplicateWindow = 2 * time.Minute
	defaultAckWait         = 30 * time.Second
	// defaultMaxAckPending bounds how many messages a node holds unacked.
	// It must stay above the number of drives a node writes at once: a
	// running assignment stays unacked, and a cancel queued behind a full
	// window would wait for a task to end.
	defaultMaxAckPending = 64

	// apiTimeout bounds one JetStream API call when the caller's context
	// has no deadline, so a call made while disconnected fails and is retried.
	apiTimeout = 10 * time.Second
)

// Config sets up the stream and the per-node consumers. The zero value is
// usable; zero fields take the defaults documented on them. The controller
// and the imagers must use the same consumer settings, since either side
// may (re)create a node's consumer and the last one wins.
type Config struct {
	// Replicas of the stream: 1 (the default) on a single server, 3 in a
	// NATS cluster.
	Replicas int
	// DuplicateWindow is how long the stream remembers message ids to drop
	// a republished message; default 2 minutes.
	DuplicateWindow time.Duration
	// AckWait is how long a delivered message may go without an ack or an
	// InProgress before it is delivered again; default 30 seconds.
	AckWait time.Duration
	// MaxAckPending is how many messages a node may hold unacked; default
	// 64. Keep it above the node's drive count so that cancels get through
	// while every drive is being written.
	MaxAckPending int
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = defaultDuplicateWindow
	}
	if c.AckWait <= 0 {
		c.AckWait = defaultAckWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = defaultMaxAckPending
	}
	return c
}

// Subject is the subject a node's messages are published on. nodeID must
// pass ident.NodeID.
func Subject(nodeID string) string { return subjectPrefix + nodeID }

// ConsumerName is the durable consumer a node reads its messages through.
// nodeID must pass ident.NodeID.
func ConsumerName(nodeID string) string { return consumerPrefix + nodeID }

// EnsureStream creates the assignment stream, or updates it to cfg.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := withAPITimeout(ctx)
	defer cancel()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "imagefarm task assignments and cancels, one subject per imager node",
		Subjects:    []string{subjectPrefix + "*"},
		// Work-queue retention: a message lives until its node acks or
		// terminates it, however long the node is away.
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	return s, nil
}

// EnsureConsumer creates a node's durable consumer, or updates it to cfg.
// The stream must exist.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, nodeID string, cfg Config) (jetstream.Consumer, error) {
	if err := ident.NodeID(nodeID); err != nil {
		return nil, fmt.Errorf("ensure consumer: %w", err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := withAPITimeout(ctx)
	defer cancel()
	c, err := js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName(nodeID),
		Description:   "assignments and cancels for imager node " + nodeID,
		FilterSubject: Subject(nodeID),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		// Never give up on a message: one the node does not ack is still
		// its job, and a dropped cancel would leave a drive being written.
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s: %w", ConsumerName(nodeID), err)
	}
	return c, nil
}

func withAPITimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, apiTimeout)
}
