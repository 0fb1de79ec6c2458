#!/usr/bin/env bash
# Scheduling benchmark (issue 4): the controller as its own process on a real
# NATS server with JetStream, simulated imagers that speak the real protocols
# (a gRPC status stream and a NATS dispatch subscriber each; no drive is
# written), and standing orders submitted through the client API. Each written
# USB key is swapped for a new one (DriveRemoved + DriveInserted), so the
# standing orders keep taking fresh keys. Prints submit-to-assign latency,
# tasks per second through the whole lifecycle, and the controller's CPU time
# and peak RSS; exits 3 when the run finished but its checks found the
# controller misbehaving (figures still printed).
#
#   tests/bench/schedule.sh                                # NODES=200 DRIVES=16 TASKS=10000
#   NODES=20 DRIVES=4 TASKS=500 tests/bench/schedule.sh    # well under a minute
#
# More knobs: JOB_COUNT (tasks per standing order; default 100, or a quarter of
# WINDOW), WINDOW (most tasks submitted and not done; default one per drive),
# WRITE_TIME (fake write time per task, e.g. 30s; default 0), SWAP_TIME,
# EMBEDDED=1 (NATS inside the bench process instead of a nats-server process),
# TIMEOUT (default 30m), OUT (work folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${NODES:-200}
DRIVES=${DRIVES:-16}
TASKS=${TASKS:-10000}
out=${OUT:-$(mktemp -d /var/tmp/imagefarm-sbench.XXXXXX)}
mkdir -p "$out"

go build -o "$out/imagefarm" ./cmd/imagefarm
go build -o "$out/schedule" ./tests/bench/schedule
natsbin=()
if [[ -z ${EMBEDDED:-} ]]; then
	# nats-server is a dependency in go.mod: its own main package builds from the module cache.
	go build -o "$out/nats-server" github.com/nats-io/nats-server/v2
	natsbin=(-nats-bin "$out/nats-server")
fi
rm -rf "$out/run"
exec "$out/schedule" -imagefarm "$out/imagefarm" "${natsbin[@]}" -dir "$out/run" \
	-nodes "$NODES" -drives "$DRIVES" -tasks "$TASKS" -job-count "${JOB_COUNT:-0}" -window "${WINDOW:-0}" \
	-write-time "${WRITE_TIME:-0s}" -swap-time "${SWAP_TIME:-0s}" -timeout "${TIMEOUT:-30m}"
