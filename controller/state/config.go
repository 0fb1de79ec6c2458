package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
)

// Names of the JetStream assets the store owns.
const (
	// JobsBucket maps a job id to its Job, without tasks.
	JobsBucket = "imagefarm-jobs"
	// TasksBucket maps "<job_id>.<task_id>" to its Task.
	TasksBucket = "imagefarm-tasks"
	// NodesBucket maps a node id to its Node.
	NodesBucket = "imagefarm-nodes"
	// DrivesBucket maps "<node_id>.<base32hex(drive_id)>" to its Drive.
	DrivesBucket = "imagefarm-drives"
	// EventsStream holds every job and task change as a JobEvent.
	EventsStream = "IMAGEFARM_EVENTS"
	// EventsSubjectPrefix starts the subject of a job's events, which is
	// followed by the job id.
	EventsSubjectPrefix = "imagefarm.events."
)

const (
	defaultEventsMaxAge    = 7 * 24 * time.Hour
	defaultDuplicateWindow = 10 * time.Minute
	defaultReconcileWindow = time.Minute
)

// Config says how the store's buckets and stream are set up. The zero value
// is right for a single NATS server.
type Config struct {
	// Replicas is how many servers keep each bucket and the events stream:
	// 1 (the default) for a single server, 3 for a production cluster.
	Replicas int
	// EventsMaxAge is how long events are kept; WatchJob from an older
	// revision fails with OUT_OF_RANGE. Default 7 days.
	EventsMaxAge time.Duration
	// EventsMaxMsgs caps the number of events kept, oldest dropped first;
	// 0 means no cap.
	EventsMaxMsgs int64
	// DuplicateWindow is how long the events stream remembers message ids,
	// so an append retried within it is stored once. Default 10 minutes,
	// longer than a NATS outage the controller rides out; at most
	// EventsMaxAge.
	DuplicateWindow time.Duration
	// ReconcileWindow is how far before the newest event Reconcile looks for
	// changes whose event is missing. A change's event is appended
	// milliseconds after the change, so the default of 1 minute is ample.
	ReconcileWindow time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Replicas < 0 || c.EventsMaxAge < 0 || c.EventsMaxMsgs < 0 || c.DuplicateWindow < 0 || c.ReconcileWindow < 0 {
		return c, errors.New("state config: negative replicas, limit or window")
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = defaultEventsMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = defaultDuplicateWindow
	}
	// The server refuses a duplicate window longer than the stream's max age.
	c.DuplicateWindow = min(c.DuplicateWindow, c.EventsMaxAge)
	if c.ReconcileWindow == 0 {
		c.ReconcileWindow = defaultReconcileWindow
	}
	return c, nil
}

// Store keeps the controller's state in JetStream: jobs, tasks, nodes and
// drives in KV buckets, and every job and task change in the events stream.
// It is safe for concurrent use and holds no goroutines.
type Store struct {
	cfg    Config
	js     jetstream.JetStream
	events jetstream.Stream
	log    *eventLog
	locks  keyLocks
	jobs   *kind[*imagefarmv1.Job]
	tasks  *kind[*imagefarmv1.Task]
	nodes  *kind[*imagefarmv1.Node]
	drives *kind[*imagefarmv1.Drive]
}

// New creates the buckets and the events stream, or updates them to cfg
// (so a changed Replicas or EventsMaxAge takes effect), then runs Reconcile
// so that changes a crashed controller stored without their event get it
// before anyone reads the stream.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, js: js}
	if s.events, err = ensureEvents(ctx, js, cfg); err != nil {
		return nil, err
	}
	s.log = &eventLog{js: js, pending: map[string]pendingEvent{}}
	kvs := map[string]jetstream.KeyValue{}
	for _, name := range []string{JobsBucket, TasksBucket, NodesBucket, DrivesBucket} {
		if kvs[name], err = ensureBucket(ctx, js, name, cfg); err != nil {
			return nil, err
		}
	}
	s.jobs = newJobKind(kvs[JobsBucket], s)
	s.tasks = newTaskKind(kvs[TasksBucket], s)
	s.nodes = newNodeKind(kvs[NodesBucket], s)
	s.drives = newDriveKind(kvs[DrivesBucket], s)
	if _, err := s.Reconcile(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// bucketHistory is how many revisions of each record a bucket keeps.
const bucketHistory = 5

func ensureBucket(ctx context.Context, js jetstream.JetStream, name string, cfg Config) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name,
		// Only the current value is read (the history is the events
		// stream), but with a history of 1 a key rewritten while a scan
		// reads the bucket loses its old message and nats.go's watcher can
		// end the scan without it. With a few revisions kept, the value a
		// scan started from stays until the scan has read it.
		History:  bucketHistory,
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", name, err)
	}
	return kv, nil
}

func ensureEvents(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "imagefarm job and task events; the stream sequence is the event revision",
		Subjects:    []string{EventsSubjectPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.EventsMaxAge,
		MaxMsgs:     maxOrUnlimited(cfg.EventsMaxMsgs),
		Duplicates:  cfg.DuplicateWindow,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", EventsStream, err)
	}
	return st, nil
}

// maxOrUnlimited turns "0 = no cap" into JetStream's -1.
func maxOrUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
