#!/usr/bin/env bash
# Capacity-probe figures (issue 6, fake-capacity keys), as root (loop
# devices, a FUSE mount): how long `--check-capacity` takes and how much it
# writes on sparse loop devices of 1 and 8 GiB, honest and counterfeit (a
# loop device over a FUSE file that wraps at 1 GiB; a block-layer double
# that drops writes past 3 GiB). Each figure is the median of 5 probes.
#
#   tests/bench/capacity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) -eq 0 ]] || { echo "capacity.sh needs root (loop devices, FUSE)" >&2; exit 1; }
go test -count=1 -v -run '^TestCapacityProbeFigures$' ./imager/ | sed -n 's/^ *capacity_loop_test.go:[0-9]*: //p'
