#!/usr/bin/env bash
# Network boot figures (issue 13), in the VM lab of tests/netboot under TCG, as
# root (network namespaces, taps), with what tests/netboot needs installed
# (scripts/test.sh installs it). A dev farm's controller plans the boots and
# holds a disk-shaped image; each VM has a disk of its own, netboots, enrolls,
# writes the image, verifies it and reboots.
#   single   ROUNDS rounds of one VM per chain (secure-boot: OVMF with Secure
#            Boot on, shim and GRUB over TFTP; ipxe: OVMF, ipxe.efi over TFTP,
#            the rest over HTTP; bios: SeaBIOS, its NIC's iPXE ROM, HTTP):
#            power-on to the deploy environment's report, to "device
#            enrolled" (registered) and to the deploy's result (verified);
#            bytes over TFTP and HTTP; then, in the same boot of the same VM,
#            the baseline: the same raw image copied onto the same disk with
#            imagefarm.debug.dd (plain HTTP, O_DIRECT write in 4 MiB blocks,
#            O_DIRECT read back and SHA-256: dd oflag=direct, then dd
#            iflag=direct | sha256sum).
#   at-once  AT_ONCE VMs of the ipxe chain booting and deploying at once.
# Medians over the rounds. The machine's load average is sampled throughout.
# SIDE_BY_SIDE=1 boots the chains of a round at once (for a machine too slow
# for ROUNDS rounds one VM at a time; the figures say so). ROUNDS=0 or
# AT_ONCE=0 leaves that part out; AT_ONCE_SIZE is the at-once image's size.
#
#   tests/bench/netboot.sh                     # SIZE=1GiB ROUNDS=3 AT_ONCE=8
#   SIZE=256MiB ROUNDS=1 AT_ONCE=2 tests/bench/netboot.sh
#   ROUNDS=0 AT_ONCE=8 AT_ONCE_SIZE=64MiB tests/bench/netboot.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-1GiB}
ROUNDS=${ROUNDS:-3}
AT_ONCE=${AT_ONCE:-8}
CHAINS=${CHAINS:-secure-boot,ipxe,bios}
AT_ONCE_SIZE=${AT_ONCE_SIZE:-$SIZE}
SIDE_BY_SIDE=${SIDE_BY_SIDE:-0}
[[ $(id -u) -eq 0 ]] || { echo "netboot.sh needs root (network namespaces, taps)" >&2; exit 1; }
out=${OUT:-$(mktemp -d /var/tmp/imagefarm-nbench.XXXXXX)}
mkdir -p "$out"
[[ $ROUNDS -gt 0 ]] && go run ./tests/bench/mkimage -size "$SIZE" -seed 1 "$out/img"
[[ $AT_ONCE -gt 0 ]] && go run ./tests/bench/mkimage -size "$AT_ONCE_SIZE" -seed 1 "$out/img-at-once"
(while sleep 10; do cut -d' ' -f1 /proc/loadavg; done) >"$out/load" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
figures() { # figures NAME FLAGS...: runs TestFigures, its log in $out/NAME.log
	local name=$1
	shift
	go test -count=1 -timeout 300m -run '^TestFigures$' ./tests/netboot/ -e2e -v \
		"$@" >"$out/$name.log" 2>&1 || { echo "TestFigures $name failed: see $out/$name.log" >&2; exit 1; }
}
side=()
[[ $SIDE_BY_SIDE == 1 ]] && side=(-figures-side-by-side)
[[ $ROUNDS -gt 0 ]] && figures single -figures-image "$out/img" -figures-chains "$CHAINS" -figures-rounds "$ROUNDS" -figures-at-once 0 "${side[@]}"
[[ $AT_ONCE -gt 0 ]] && figures at-once -figures-image "$out/img-at-once" -figures-chains ipxe -figures-rounds 0 -figures-at-once "$AT_ONCE" -figures-dd=false
kill $sampler

echo "imagefarm network boot figures: $SIZE disk-shaped image (at once: $AT_ONCE_SIZE), TCG, $(nproc) cores, $(date -u +%F)"
echo "load average (1 min) during the runs: $(sort -n "$out/load" | awk '{a[NR]=$1; s+=$1} END {printf "median %s, mean %.1f, min %s, max %s", a[int((NR+1)/2)], s/NR, a[1], a[NR]}')"
cat "$out"/*.log | grep -o 'FIGURE-JSON .*' | cut -d' ' -f2- | python3 -c '
import json, statistics, sys
figs = [json.loads(l) for l in sys.stdin]
med = statistics.median
single = [f for f in figs if f["at_once"] == 1]
if single:
    print("\none VM %s, medians of %d rounds (seconds from power-on; MB/s = 10^6 bytes/s):" % (
          "per chain at once (side by side)" if single[0].get("side_by_side") else "at a time", max(f["round"] + 1 for f in single)))
    print("%-12s %7s %11s %9s %10s %11s %11s %9s %9s %7s %7s" % ("chain", "report", "registered", "verified", "TFTP B", "HTTP B",
          "deploy s", "MB/s", "dd MB/s", "ratio", "dd w"))
    for chain in dict.fromkeys(f["chain"] for f in single):
        fs = [f for f in single if f["chain"] == chain]
        mbs = med([f["image_bytes"] / f["deploy_s"] / 1e6 for f in fs])
        dd = [f["image_bytes"] / (f["dd_write_s"] + f["dd_read_s"]) / 1e6 for f in fs if f.get("dd_write_s")]
        ddw = [f["image_bytes"] / f["dd_write_s"] / 1e6 for f in fs if f.get("dd_write_s")]
        print("%-12s %7.1f %11.1f %9.1f %10d %11d %11.1f %9.1f %9s %7s %7s" % (chain, med([f["report_s"] for f in fs]),
              med([f["registered_s"] for f in fs]), med([f["verified_s"] for f in fs]), med([f["tftp_bytes"] for f in fs]),
              med([f["http_bytes"] for f in fs]), med([f["deploy_s"] for f in fs]), mbs,
              "%.1f" % med(dd) if dd else "-", "%.2f" % (mbs / med(dd)) if dd else "-", "%.1f" % med(ddw) if ddw else "-"))
    print("(deploy s: enroll, fetch through the controller, write, read-back verify, report, in the VM; MB/s: the image over that;")
    print(" dd MB/s: the raw image over plain HTTP written O_DIRECT and read back O_DIRECT + SHA-256 in the same boot; ratio: MB/s / dd MB/s;")
    print(" dd w: the dd write alone)")
many = [f for f in figs if f["at_once"] > 1]
if many:
    n = len(many)
    print("\n%d VMs (%s, %d MiB image) booting and deploying at once:" % (n, many[0]["chain"], many[0]["image_bytes"] >> 20))
    print("  registered: median %.1fs, last %.1fs; verified: median %.1fs, last %.1fs; deploy in the VM: median %.1fs" % (
          med([f["registered_s"] for f in many]), max(f["registered_s"] for f in many),
          med([f["verified_s"] for f in many]), max(f["verified_s"] for f in many), med([f["deploy_s"] for f in many])))
    print("  all %d written and verified %.1fs after power-on: %.1f MB/s together" % (n, max(f["verified_s"] for f in many),
          n * many[0]["image_bytes"] / max(f["deploy_s"] for f in many) / 1e6))
'
echo "(raw figures: $out/*.log, FIGURE-JSON lines)"
