#!/usr/bin/env bash
# Rollout figures (issue 15): MODELS models of PER_MODEL simulated devices
# (default 20 x 100) over the real controller and an embedded NATS; the
# time from approving every first article to the last wave's last
# assignment, and CPU per device, against plain device orders for the same
# devices, as medians of RUNS runs (default 3).
#
#   tests/bench/rollout.sh
#   MODELS=4 PER_MODEL=25 RUNS=1 tests/bench/rollout.sh    # a quick look
#
# More knobs: WAVE_PERCENT (default 25), RETRY_MS (how often a device with
# nothing yet netboots again; default 1000).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go test -run '^$' -bench BenchmarkRolloutFleet -benchtime 1x -timeout 60m -v ./tests/bench/rollout/
