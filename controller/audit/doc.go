// Package audit owns the farm's audit trail: an append-only, hash-chained
// log of who did what (job submits and cancels, image changes, drive
// writes, guard refusals, fenced nodes), kept in NATS JetStream.
//
// # Storage
//
// The stream IMAGEFARM_AUDIT (file storage, no max age unless configured)
// holds one AuditRecord per message on the subject imagefarm.audit. It
// denies deleting and purging messages, and JetStream refuses to lift
// either once set, so a record, once stored, stays as it is for the life of
// the stream. A record's sequence is its stream sequence.
//
// # The chain
//
// Each record carries prev_hash, the hash of the record before it, and its
// own hash: the hex SHA-256 of its canonical bytes (Hash; the format is
// documented on AuditRecord in proto/imagefarm/v1/audit.proto). Chain
// checks records in order and names the first one that breaks the chain:
// an edited record no longer matches its hash, or, rehashed, no longer
// matches the next record's prev_hash; a removed record leaves a gap in
// the sequences; an inserted one matches neither. What a chain cannot show
// is records cut off its end: keep the last hash `imagefarm audit verify`
// prints somewhere else to compare later.
//
// # One writer
//
// Appends are serialized within a Log, and each is published with the
// sequence it expects to follow (JetStream's expected last sequence), so
// two controllers appending to the same stream cannot fork the chain: the
// one that lost the race reads the new last record and chains after it.
// Open reads the last record, so a restarted controller continues the
// chain where the last one left it.
package audit
