// Package dirlock makes a folder owned by one process at a time: the data
// folder of imagefarm dev, a node cache, an embedded NATS store. Two owners
// of one folder corrupt each other quietly (a second dev farm fenced the
// first one's node and wrote into its audit trail), so the second is
// refused with the PID of the first.
//
// The lock is flock(2) on a file in the folder, which holds the owner's
// PID and program name. The kernel releases it when its owner dies, however
// it dies, so a lock file left by a killed process never blocks anyone; the
// file itself is left in place (removing it on release would let two
// processes each hold a lock on a different file of the same name).
package dirlock
