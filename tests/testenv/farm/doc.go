// Package farm starts a whole imagefarm inside a test's process, from real
// parts: an embedded NATS server with JetStream, a file store with a
// catalog, a farm CA, a controller serving both gRPC services on loopback,
// simulated imager nodes (tests/testenv/simimager) that a test scripts
// message by message, and real imager agents. It is the one way a test
// starts a farm in process; tests/e2e runs the farm as processes instead.
//
// It imports the controller and the imager, so only external test packages
// (package controller_test, imager_test, ...) and commands can use it: a
// package's internal tests would make an import cycle.
package farm
