// Package rollout holds the rollout figures of issue 15 (not run by CI):
// simulated devices of many models over the real controller and an
// embedded NATS, rolled out to with first articles, one approval per
// model and waves; tests/bench/rollout.sh runs it.
package rollout
