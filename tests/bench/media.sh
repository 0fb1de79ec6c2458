#!/usr/bin/env bash
# USB media benchmark (issue 6): `imagefarm media build` of a key from a 1 GiB
# WIM (random files captured by wimlib with --compress=none, so it does not
# compress) and 200 MiB of drivers, from a file store, vs the same files
# copied with mcopy into an image of the same size partitioned by sfdisk and
# formatted by mkfs.vfat. media build's time includes pulling every input
# from the catalog (decompressing and verifying each chunk) and unpacking the
# bundles; its "write" figure is the image alone. Medians of RUNS runs.
#
#   tests/bench/media.sh                   # WIM=1024 DRIVERS=200 (MiB) RUNS=3
#   WIM=256 DRIVERS=50 RUNS=1 tests/bench/media.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
WIM=${WIM:-1024}
DRIVERS=${DRIVERS:-200}
RUNS=${RUNS:-3}
for tool in wimlib-imagex:wimtools mcopy:mtools mkfs.vfat:dosfstools sfdisk:fdisk; do
	command -v "${tool%%:*}" >/dev/null || { echo "install the Debian package ${tool#*:} (for ${tool%%:*})" >&2; exit 1; }
done
out=${OUT:-$(mktemp -d /var/tmp/imagefarm-mbench.XXXXXX)}
mkdir -p "$out"
bin=$out/imagefarm
go build -o "$bin" ./cmd/imagefarm
export IMAGEFARM_STORE="file://$out/store" MTOOLS_SKIP_CHECK=1

# Inputs: a WIM of 16 random files, drivers as 20 folders of 1 MiB files, a
# WinPE folder (bootx64.efi and a small boot.wim).
rm -rf "$out/in" "$out/store"
mkdir -p "$out/in/tree" "$out/in/drivers" "$out/in/winpe/EFI/Boot" "$out/in/winpe/sources"
for i in $(seq 16); do head -c "$((WIM / 16))M" /dev/urandom >"$out/in/tree/file$i.bin"; done
wimlib-imagex capture "$out/in/tree" "$out/in/install.wim" "Windows" --compress=none >/dev/null
rm -rf "$out/in/tree"
for i in $(seq "$DRIVERS"); do
	d=$out/in/drivers/device$((i % 20))
	mkdir -p "$d"
	head -c 1M /dev/urandom >"$d/driver$i.sys"
done
head -c 1M /dev/urandom >"$out/in/winpe/EFI/Boot/bootx64.efi"
mkdir -p "$out/in/pe" && head -c 8M /dev/urandom >"$out/in/pe/boot.bin"
wimlib-imagex capture "$out/in/pe" "$out/in/winpe/sources/boot.wim" "WinPE" >/dev/null
"$bin" image push winpe:1 "$out/in/winpe" --kind winpe >/dev/null
"$bin" image push win:1 "$out/in/install.wim" --kind wim >/dev/null
"$bin" image push drivers:1 "$out/in/drivers" --kind drivers --model "Bench 1" >/dev/null

# measure NAME CMD...: appends CMD's wall seconds to $out/NAME
measure() {
	local name=$1 start end
	shift
	start=$(date +%s.%N)
	"$@"
	end=$(date +%s.%N)
	awk -v a="$start" -v b="$end" 'BEGIN {print b - a}' >>"$out/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rm -f "$out"/{build,write,mcopy}

build() {
	rm -rf "$out/key.img" "$out/work" && mkdir "$out/work"
	"$bin" media build --winpe winpe:1 --wim win:1 --drivers drivers:1 --model "Bench 1" \
		--out "$out/key.img" --work-dir "$out/work" --json --log-level warn >"$out/build.json"
}
# mcopy_baseline: the same files into an image of the same size, partitioned
# and formatted by the usual tools.
mcopy_baseline() {
	local img=$out/mcopy.img
	rm -f "$img" && truncate -s "$size" "$img"
	echo 'start=2048, type=c, bootable' | sfdisk -q "$img"
	mkfs.vfat -F 32 -n IMAGEFARM --offset 2048 "$img" >/dev/null
	mcopy -s -i "$img@@1M" "$out/in/winpe/EFI" "$out/in/winpe/sources" ::
	mmd -i "$img@@1M" ::images ::drivers
	mcopy -i "$img@@1M" "$out/in/install.wim" ::images/
	mcopy -s -i "$img@@1M" "$out/in/drivers" "::drivers/Bench 1"
}
build
size=$(stat -c %s "$out/key.img")
digest=$(grep -o '"digest": "[^"]*"' "$out/build.json")
# Each run starts with nothing left to write back, so that one side's
# writeback does not slow the other.
for i in $(seq "$RUNS"); do
	sync
	measure build build
	grep -o '"write_seconds": [0-9.e-]*' "$out/build.json" | grep -o '[0-9.e-]*$' >>"$out/write"
	grep -q "$digest" "$out/build.json" || { echo "media build gave another image: $(cat "$out/build.json")" >&2; exit 1; }
	sync
	measure mcopy mcopy_baseline
done

b=$(median <"$out/build")
w=$(median <"$out/write")
m=$(median <"$out/mcopy")
mib() { awk -v s="$1" -v b="$size" 'BEGIN {printf "%.0f", b/s/1048576}'; }
echo
echo "imagefarm media benchmark: ${WIM} MiB WIM + ${DRIVERS} MiB drivers -> $((size >> 20)) MiB key image, $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf "media build   median %6.2fs  %5s MiB/s   (catalog pull, unpack and image)\n" "$b" "$(mib "$b")"
printf "  image write median %6.2fs  %5s MiB/s   (fatdisk alone)\n" "$w" "$(mib "$w")"
printf "mcopy         median %6.2fs  %5s MiB/s   (sfdisk + mkfs.vfat + mcopy of local files)\n" "$m" "$(mib "$m")"
awk -v b="$b" -v w="$w" -v m="$m" 'BEGIN {printf "ratio mcopy/build %.2fx   mcopy/image-write %.2fx   (above 1: imagefarm is faster)\n", m / b, m / w}'
echo "same digest in every run: $digest"
echo "raw figures: $out"
