package ident

// Limits of the farm's ids.
const (
	// MaxNodeIDLen is the longest node id, in bytes. A node id names the
	// node's NATS subject (imagefarm.assign.ID), its durable consumer
	// (imager-ID, a file name on the NATS server), its NATS user and inbox
	// prefix, its certificate's URI (imagefarm://node/ID) and its records'
	// KV keys; 64 keeps all of them short.
	MaxNodeIDLen = 64
	// MaxClientNameLen is the longest client certificate name, in bytes.
	MaxClientNameLen = 64
	// MaxDriveIDLen is the longest drive id, in bytes: room for a
	// transport, a vendor, a model and a USB serial of up to 126
	// characters. Drive discovery cuts a longer one and ends it with a
	// hash of the whole.
	MaxDriveIDLen = 255
	// MaxRecordIDLen is the longest job or task id, in bytes.
	MaxRecordIDLen = 128
)

var (
	nodeIDRule = rule{kind: "node id", min: 1, max: MaxNodeIDLen, ok: oneOf("_-"),
		chars: "ASCII letters, digits, '_' or '-'",
		hint:  "pick one such as bench-3 (it names a NATS subject, a certificate and KV keys)"}
	clientNameRule = rule{kind: "client name", min: 1, max: MaxClientNameLen, ok: oneOf("_-"),
		chars: "ASCII letters, digits, '_' or '-'", hint: "pick one such as alice or ci-runner"}
	driveIDRule = rule{kind: "drive id", min: 1, max: MaxDriveIDLen, ok: oneOf("._:-"),
		chars: "ASCII letters, digits, '.', '_', ':' or '-'",
		hint:  "give it as `imagefarm drives` lists it"}
	jobIDRule = rule{kind: "job id", min: 1, max: MaxRecordIDLen, ok: oneOf("_-"),
		chars: "ASCII letters, digits, '_' or '-'", hint: "give it as `imagefarm job ls` lists it"}
	taskIDRule = rule{kind: "task id", min: 1, max: MaxRecordIDLen, ok: oneOf("_-"),
		chars: "ASCII letters, digits, '_' or '-'", hint: "give it as `imagefarm job show` lists it"}
)

// NodeID checks an imager node's id: 1 to MaxNodeIDLen ASCII letters,
// digits, '_' or '-'. It is a NATS subject token, where '.', '*' and '>'
// change the subject's meaning, and a file name on the NATS server.
func NodeID(s string) error { return nodeIDRule.check(s) }

// ClientName checks the name a client certificate binds: the rule of a
// node id, since both are the path of a certificate's imagefarm:// URI
// and the actor of audit records.
func ClientName(s string) error { return clientNameRule.check(s) }

// DriveID checks a drive id: 1 to MaxDriveIDLen ASCII letters, digits,
// '.', '_', ':' or '-' — what drive discovery makes of transports,
// serials, WWNs and file names. It has no '/', so NODE/DRIVE names one
// drive; no spaces or Unicode, so it can be typed and cannot be confused
// with another. Store keys encode it, since it may hold '.' and ':'.
func DriveID(s string) error { return driveIDRule.check(s) }

// JobID checks a job id: 1 to MaxRecordIDLen ASCII letters, digits, '_' or
// '-'. It is a KV key and an event subject token (imagefarm.events.ID).
func JobID(s string) error { return jobIDRule.check(s) }

// TaskID checks a task id: the rule of a job id, for the same reasons; a
// task id is also part of its NATS message ids.
func TaskID(s string) error { return taskIDRule.check(s) }
