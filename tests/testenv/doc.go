// Package testenv starts the real components that imagefarm's tests run
// against: a MinIO server process for every S3 path, an embedded NATS
// server, loop devices (and counterfeit USB keys built on them) for drives,
// a PKI, and a fault proxy. Nothing here is a mock.
//
// The MinIO binary is found through $IMAGEFARM_MINIO or at .cache/bin/minio
// in the repository, where scripts/test.sh installs it. A test that needs it
// and does not find it fails, saying how to install it: it never skips.
package testenv
