#!/usr/bin/env bash
# Catalog benchmarks (issue 2), all in one run on this machine:
#   push of a disk-shaped image vs `zstd -T0 -3 FILE -o FILE.zst`
#   pull (streamed out, every chunk verified) vs `zstd -dc FILE.zst > /dev/null`
#   a second version with 5% of its chunks changed: bytes uploaded vs the first's stored bytes
#   peak RSS of push and pull, also on a larger image, through a file store and a real MinIO
#
#   tests/bench/catalog.sh                 # SIZE=1GiB RUNS=5 BIG=4GiB
#   SIZE=256MiB RUNS=3 BIG= tests/bench/catalog.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-1GiB}
RUNS=${RUNS:-5}
BIG=${BIG-4GiB}
out=${OUT:-$(mktemp -d /var/tmp/imagefarm-bench.XXXXXX)}
mkdir -p "$out"
command -v zstd >/dev/null || { echo "install zstd (apt-get install zstd)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "install GNU time (apt-get install time)" >&2; exit 1; }

go build -o "$out/imagefarm" ./cmd/imagefarm
bin=$out/imagefarm
go run ./tests/bench/mkimage -size "$SIZE" -seed 1 "$out/v1.img"
bytes=$(stat -c %s "$out/v1.img")

# measure NAME CMD...: runs CMD, appends "seconds peak_rss_kib" to $out/NAME
measure() {
	local name=$1
	shift
	/usr/bin/time -f "%e %M" -o "$out/.t" "$@"
	cat "$out/.t" >>"$out/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$2" '{print $c}' "$out/$1"; }
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN {printf "%.0f", b/s/1048576}'; }
rm -f "$out"/{zstd_c,zstd_d,push,pull,push_s3,pull_s3}

for i in $(seq "$RUNS"); do
	rm -rf "$out/store"
	measure zstd_c zstd -q -T0 -3 -f "$out/v1.img" -o "$out/v1.zst"
	measure push "$bin" image push bench:1 "$out/v1.img" --store "file://$out/store" --json >"$out/push1.json"
done
sync # the pushes' writeback must not compete with the reads below
for i in $(seq "$RUNS"); do
	measure zstd_d sh -c "zstd -dc '$out/v1.zst' >/dev/null"
	measure pull sh -c "'$bin' image pull bench:1 - --store 'file://$out/store' >/dev/null"
done
stored1=$(grep -o '"stored_bytes": [0-9]*' "$out/push1.json" | grep -o '[0-9]*$')
: >"$out/dedup"
for seed in 1 2 3; do # three different sets of changed chunks
	go run ./tests/bench/mkimage -from "$out/v1.img" -change 5 -seed "$seed" "$out/v2.img"
	"$bin" image push "bench:2-$seed" "$out/v2.img" --store "file://$out/store" --json >"$out/push2.json"
	grep -o '"new_bytes": [0-9]*' "$out/push2.json" | grep -o '[0-9]*$' >>"$out/dedup"
done

# The same through a real MinIO server on 127.0.0.1.
minio_dir=$out/minio
rm -rf "$minio_dir" && mkdir -p "$minio_dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret-key "${IMAGEFARM_MINIO:-.cache/bin/minio}" server --quiet \
	--address "127.0.0.1:$port" --console-address 127.0.0.1:0 "$minio_dir/data" >"$minio_dir/log" 2>&1 &
minio_pid=$!
trap 'kill $minio_pid 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$port/minio/health/ready" >/dev/null; do sleep 0.2; done
mkdir -p "$minio_dir/data/bench"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
for i in $(seq "$RUNS"); do
	measure push_s3 "$bin" image push bench:1 "$out/v1.img" --store "s3://bench/run$i?endpoint=127.0.0.1:$port&insecure=true" >/dev/null
done
sync
for i in $(seq "$RUNS"); do
	measure pull_s3 sh -c "'$bin' image pull bench:1 - --store 's3://bench/run$i?endpoint=127.0.0.1:$port&insecure=true' >/dev/null"
done

report() { # NAME BASELINE: median seconds, MiB/s, ratio of baseline time to ours, peak RSS
	local s b
	s=$(col "$1" 1 | median)
	b=$(col "$2" 1 | median)
	printf "%-8s median %6.2fs %6s MiB/s   %-7s %6.2fs   speed ratio %.2fx   peak RSS %s MiB\n" "$1" "$s" "$(mbps "$s")" "$2" "$b" \
		"$(awk -v a="$b" -v c="$s" 'BEGIN {print a/c}')" "$(( $(col "$1" 2 | sort -n | tail -1) / 1024 ))"
}
echo
echo "imagefarm catalog benchmark: $SIZE disk-shaped image, $RUNS runs each, $(nproc) cores, $(date -u +%F)"
report push zstd_c
report pull zstd_d
report push_s3 zstd_c
report pull_s3 zstd_d
awk -v s="$stored1" '{printf "second version (5%% of chunks changed, set %d): uploaded %d bytes = %.2f%% of the first version'"'"'s %d stored bytes\n", NR, $1, 100*$1/s, s}' "$out/dedup"

if [[ -n $BIG ]]; then
	go run ./tests/bench/mkimage -size "$BIG" -seed 2 "$out/big.img"
	rm -rf "$out/bigstore"
	measure push_big "$bin" image push big:1 "$out/big.img" --store "file://$out/bigstore" >/dev/null
	measure pull_big sh -c "'$bin' image pull big:1 - --store 'file://$out/bigstore' >/dev/null"
	echo "$BIG image: push peak RSS $(( $(col push_big 2) / 1024 )) MiB, pull peak RSS $(( $(col pull_big 2) / 1024 )) MiB"
	rm -f "$out/big.img"
fi
echo "raw figures: $out"
