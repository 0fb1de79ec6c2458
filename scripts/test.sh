#!/usr/bin/env bash
# test.sh installs what the tests need and runs all of them. It is the
# README's test command and what CI runs; on a fresh machine it needs only Go
# (and root or sudo for Debian packages).
#
#   scripts/test.sh            install, check generated code, vet, test -race, the e2e suite, soak 3 minutes, fuzz briefly
#   FUZZTIME=2000000x scripts/test.sh   fuzz each target longer (executions per target)
set -euo pipefail
cd "$(dirname "$0")/.."

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c # MinIO server, built from the Go module proxy
# A count, not a duration: Go 1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" when a duration runs out mid-minimization
# (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME=${FUZZTIME:-100000x}

say() { printf '\n== %s\n' "$*"; }

apt_install() { # apt_install PACKAGE FOR
	say "installing Debian package $1 (for $2)"
	local sudo=""
	[[ $(id -u) -eq 0 ]] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}

install_debian() { # install_debian COMMAND PACKAGE
	command -v "$1" >/dev/null || apt_install "$2" "$1"
}

install_debian_file() { # install_debian_file GLOB PACKAGE, for a package with no command
	compgen -G "$1" >/dev/null || apt_install "$2" "$1"
}

# install_signed_boot unpacks Debian's signed boot chain (shim-signed,
# grub-efi-amd64-signed) into .cache/signed-boot for the netboot tests.
# Unpacked, not installed: installing them would set up this machine's own
# boot loader.
install_signed_boot() {
	local dir=.cache/signed-boot
	if [[ -f $dir/usr/lib/shim/shimx64.efi.signed && -f $dir/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed ]]; then
		return
	fi
	say "unpacking Debian's shim-signed and grub-efi-amd64-signed into $dir"
	local sudo="" tmp
	[[ $(id -u) -eq 0 ]] || sudo=sudo
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -qq shim-signed grub-efi-amd64-signed 2>/dev/null) ||
		{ $sudo apt-get update -qq && (cd "$tmp" && apt-get download -qq shim-signed grub-efi-amd64-signed); }
	mkdir -p "$dir"
	for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
	rm -rf "$tmp"
}

install_minio() {
	local bin=.cache/bin/minio stamp=.cache/bin/minio.version
	if [[ -x $bin && "$(cat "$stamp" 2>/dev/null)" == "$MINIO_VERSION" ]]; then
		return
	fi
	say "building MinIO $MINIO_VERSION into $bin (about 4 minutes the first time)"
	GOBIN="$PWD/.cache/bin" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
	echo "$MINIO_VERSION" >"$stamp"
}

install_debian wimlib-imagex wimtools # WIM fixtures are written by wimlib
install_debian zstd zstd              # benchmark baselines
install_debian mkfs.ext4 e2fsprogs    # mounted-drive guard tests
install_debian losetup mount          # loop devices (util-linux)
install_debian blockdev util-linux
install_debian sfdisk fdisk           # USB media: the partition table, read back
install_debian mcopy mtools           # USB media: the FAT32 files, read back
install_debian fsck.vfat dosfstools   # USB media: the FAT32 checked; mkfs.vfat for the benchmark and the Windows disk fixture
install_debian zip zip                # recovery keys: a zip made by Info-ZIP becomes a bundle
install_debian mkntfs ntfs-3g         # Windows disk fixture: NTFS volumes made by mkntfs, read back through ntfs-3g
install_debian hivexsh libhivex-bin   # reset engine: the offline registry read with hivexget/hivexsh
install_debian_file '/boot/vmlinuz-*' linux-image-amd64 # deploy environment: the kernel and its modules
install_debian modprobe kmod          # deploy environment: module dependencies checked against modprobe's
install_debian qemu-system-x86_64 qemu-system-x86 # deploy environment: booted in a VM
install_debian dnsmasq dnsmasq-base   # deploy environment: the test network's DHCP server
install_debian ip iproute2            # deploy environment: the test network namespace
install_debian_file /usr/share/OVMF/OVMF_CODE_4M.ms.fd ovmf # netboot: UEFI, with and without Secure Boot
install_debian_file /usr/lib/ipxe/undionly.kpxe ipxe        # netboot: what the boot service serves
install_signed_boot                   # netboot: shim and GRUB, signed
install_minio
export IMAGEFARM_MINIO="$PWD/.cache/bin/minio"

say "generated protobuf code is current and buf lint is clean"
scripts/proto.sh check

say "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted (run gofmt -w on them):"
	echo "$unformatted"
	exit 1
fi
go vet ./...

say "go test -race"
go test -race -count=1 ./...

say "e2e: the farm as processes behind a fault proxy, VMs netbooting (skipped without -e2e)"
go test -race -count=1 ./tests/e2e/ ./tests/netboot/ -e2e

say "soak: faults at random over jobs for 3 minutes (skipped without -soak)"
go test -race -count=1 -run TestSoak ./tests/e2e/ -soak=3m

say "fuzzing each target for $FUZZTIME"
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/^func //' | sort -u); do
	pkg=$(dirname "$(grep -rl --include='*_test.go' "^func $target(" . | head -1)")
	echo "fuzz $target in $pkg"
	go test -run='^$' -fuzz="^$target\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=5s "$pkg" >/tmp/imagefarm-fuzz.log 2>&1 || {
		cat /tmp/imagefarm-fuzz.log
		exit 1
	}
done
say "all tests passed"
