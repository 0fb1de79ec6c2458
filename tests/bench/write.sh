#!/usr/bin/env bash
# Write-pipeline benchmarks (issue 3), all in one run on this machine, as root
# (it mounts a tmpfs and attaches loop devices):
#   fan-out  imagefarm writing and verifying 4 targets vs `zstd -dc | tee t1 t2 t3 > t4`
#            (which verifies nothing), on tmpfs files and on loop devices
#   cold     4 tmpfs targets from an empty node cache: the whole image fetched and
#            checked before a drive is written (the default) vs --write-while-fetching
#   scaling  1, 2, 4 and 8 targets: aggregate MB/s and CPU-seconds per GB written
#   devices  4 loop devices vs `dd oflag=direct` writes then an `iflag=direct`
#            read-back hash per device
#   zeros    a 4 GiB image that is 90% zeros, --discard vs writing zeros
# Except for "cold", the node cache is warm (one untimed write first): these
# measure writing.
#
#   tests/bench/write.sh                  # SIZE=1GiB RUNS=3 ZSIZE=4GiB
#   SIZE=256MiB RUNS=1 ZSIZE=1GiB tests/bench/write.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-1GiB}
RUNS=${RUNS:-3}
ZSIZE=${ZSIZE:-4GiB}
[[ $(id -u) -eq 0 ]] || { echo "write.sh needs root (tmpfs mount, loop devices)" >&2; exit 1; }
out=${OUT:-$(mktemp -d /var/tmp/imagefarm-wbench.XXXXXX)}
mkdir -p "$out"
bin=$out/imagefarm
go build -o "$bin" ./cmd/imagefarm
tmp=$out/tmpfs
mkdir -p "$tmp"
mountpoint -q "$tmp" || mount -t tmpfs -o size=20g tmpfs "$tmp"
loops=()
cleanup() {
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	umount "$tmp" 2>/dev/null || true
}
trap cleanup EXIT

go run ./tests/bench/mkimage -size "$SIZE" -seed 1 "$out/img"
zstd -q -T0 -3 -f "$out/img" -o "$out/img.zst"
bytes=$(stat -c %s "$out/img")
store="file://$out/store"
"$bin" image push bench:1 "$out/img" --store "$store" >/dev/null
export IMAGEFARM_STORE=$store

# measure NAME CMD...: runs CMD; appends "wall user sys" to $out/NAME
measure() {
	local name=$1
	shift
	/usr/bin/time -f "%e %U %S" -o "$out/.t" "$@" >/dev/null
	cat "$out/.t" >>"$out/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
wall() { awk '{print $1}' "$out/$1" | median; }
cpu() { awk '{print $2+$3}' "$out/$1" | median; }

# vdrives N: N fresh sparse virtual drives on tmpfs; prints --drive flags
vdrives() {
	rm -rf "$tmp/vd" && mkdir -p "$tmp/vd"
	local args=""
	for i in $(seq "$1"); do
		truncate -s "$bytes" "$tmp/vd/d$i"
		args+=" --drive virt-d$i"
	done
	echo "$args --virtual-drives $tmp/vd --cache $out/cache"
}
write_files() { # N [FLAGS...]
	# shellcheck disable=SC2046
	"$bin" write bench:1 $(vdrives "$1") "${@:2}"
}
cold_files() { # FLAGS...: 4 targets from an empty node cache
	rm -rf "$out/cold-cache"
	# shellcheck disable=SC2046
	"$bin" write bench:1 $(vdrives 4) --cache "$out/cold-cache" "$@"
}
tee_files() { # N
	rm -f "$tmp"/t*
	local files=""
	for i in $(seq 2 "$1"); do files+=" $tmp/t$i"; done
	# shellcheck disable=SC2086
	zstd -dc "$out/img.zst" | tee $files >"$tmp/t1"
}
export -f vdrives write_files cold_files tee_files
export bin tmp out bytes

write_files 1 >/dev/null # warm the node cache
rm -f "$out"/{tee4,write4,scale*,cold*,teeloop4,dd4,loop4,zeros*,discard*}
for r in $(seq "$RUNS"); do
	measure tee4 bash -c "tee_files 4"
	measure write4 bash -c "write_files 4"
	for n in 1 2 4 8; do measure "scale$n" bash -c "write_files $n"; done
	measure coldfirst bash -c "cold_files"
	measure coldstream bash -c "cold_files --write-while-fetching"
done
rm -rf "$tmp/vd" "$tmp"/t*

# Loop devices on tmpfs-backed files.
for i in 1 2 3 4; do
	truncate -s "$bytes" "$tmp/loop$i"
	loops+=("$(losetup --find --show --direct-io=on "$tmp/loop$i")") # reads reach the backing file, not the loop page cache
done
chunks=$((bytes / 4194304))
dd4() {
	for l in "$@"; do
		(dd if="$out/img" of="$l" bs=4M oflag=direct status=none &&
			dd if="$l" bs=4M iflag=direct count="$chunks" status=none | sha256sum >/dev/null) &
	done
	wait
}
tee_loops() {
	zstd -dc "$out/img.zst" | tee "${@:2}" >"$1"
	sync
}
export -f dd4 tee_loops
export chunks
loopargs=""
for l in "${loops[@]}"; do loopargs+=" --drive $l --allow $l"; done
for r in $(seq "$RUNS"); do
	measure dd4 bash -c "dd4 ${loops[*]}"
	measure teeloop4 bash -c "tee_loops ${loops[*]}"
	# shellcheck disable=SC2086
	measure loop4 "$bin" write bench:1 $loopargs --cache "$out/cache"
done
for l in "${loops[@]}"; do losetup -d "$l"; done
loops=()
rm -f "$tmp"/loop*

# A mostly-empty image: --discard vs writing zeros, on one loop device.
go run ./tests/bench/mkimage -size "$ZSIZE" -seed 3 -zeros 90 "$out/zimg"
zbytes=$(stat -c %s "$out/zimg")
"$bin" image push zeros:1 "$out/zimg" --store "$store" >/dev/null
rm -f "$out/zimg"
zrun() { # NAME [--discard]: a fresh, sparse loop device each run
	truncate -s "$zbytes" "$tmp/zloop"
	local z
	z=$(losetup --find --show --direct-io=on "$tmp/zloop")
	loops=("$z")
	measure "$1" "$bin" write zeros:1 --drive "$z" --allow "$z" --cache "$out/cache" "${@:2}"
	losetup -d "$z"
	loops=()
	rm -f "$tmp/zloop"
}
zrun zeros-warm # warm the node cache
for r in $(seq "$RUNS"); do
	zrun zeros
	zrun discard --discard
done

gib=$(awk -v b="$bytes" 'BEGIN {printf "%.2f", b/1073741824}')
echo
echo "imagefarm write benchmark: $SIZE disk-shaped image, medians of $RUNS runs, $(nproc) cores, $(date -u +%F)"
ratio() { awk -v a="$(wall "$1")" -v b="$(wall "$2")" 'BEGIN {printf "%.2f", a/b}'; }
printf "fan-out, 4 tmpfs files:  imagefarm write+verify %.2fs   zstd -dc | tee (no verify) %.2fs   time ratio %sx (below 1: imagefarm faster)\n" \
	"$(wall write4)" "$(wall tee4)" "$(ratio write4 tee4)"
for n in 1 2 4 8; do
	awk -v n="$n" -v w="$(wall scale$n)" -v c="$(cpu scale$n)" -v b="$bytes" 'BEGIN {
		printf "scaling, %d target(s):    %.2fs   aggregate %.0f MB/s written and verified   %.2f CPU-s per GB\n", n, w, n*b/w/1e6, c/(n*b/1e9) }'
done
printf "cold cache, 4 tmpfs files: fetched and checked first %.2fs   --write-while-fetching %.2fs   time ratio %sx\n" \
	"$(wall coldfirst)" "$(wall coldstream)" "$(ratio coldfirst coldstream)"
printf "4 loop devices:          imagefarm write+verify %.2fs   dd oflag=direct + iflag=direct sha256 %.2fs   time ratio %sx\n" \
	"$(wall loop4)" "$(wall dd4)" "$(ratio loop4 dd4)"
printf "4 loop devices:          imagefarm write+verify %.2fs   zstd -dc | tee + sync (no verify) %.2fs   time ratio %sx\n" \
	"$(wall loop4)" "$(wall teeloop4)" "$(ratio loop4 teeloop4)"
printf "%s image, 90%% zeros:  --discard %.2fs   writing zeros %.2fs   time ratio %sx\n" "$ZSIZE" "$(wall discard)" "$(wall zeros)" "$(ratio discard zeros)"
echo "($gib GiB image; raw figures in $out)"
