// Package testenv starts the real components that imagefarm's tests run
// against: an embedded NATS server, a MinIO server process for every S3
// path, a farm CA, loop devices and counterfeit USB keys, Windows disk
// images (NewWindowsDisk: GPT, EFI, MSR, NTFS Windows and recovery volumes
// made by sfdisk, mkfs.vfat, mkntfs and wimlib) and WIMs to apply
// (CaptureWIM), a fault proxy, and the one way tests wait for something to
// happen (Eventually). Nothing here is a mock. Its subpackages build on it: farm starts a whole farm in
// the test's process, simimager is the one simulated imager node.
//
// The MinIO binary is found through $IMAGEFARM_MINIO or at .cache/bin/minio
// in the repository, where scripts/test.sh installs it. A test that needs it
// and does not find it fails, saying how to install it: it never skips.
package testenv
