// Package fleet keeps the records of fleet rollouts in JetStream KV: the
// device models (what SMBIOS names a model's devices report, and what
// they get) and the rollouts. It stores and reads; controller/core makes
// every change (core.UpdateModel, core.UpdateRollout), checked against
// its tables, and package controller runs the rollouts.
package fleet
