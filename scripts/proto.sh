#!/usr/bin/env bash
# proto.sh generates and checks the Go code of the API contract in proto/.
#
#   scripts/proto.sh gen     regenerate proto/**/*.pb.go
#   scripts/proto.sh check   lint, format check, regenerate, and fail if the
#                            committed generated code is not what buf produces
#
# buf, protoc-gen-go and protoc-gen-go-grpc are pinned in tools/go.mod and run
# with `go tool`, so only Go is needed; the first run fetches and builds them.
set -euo pipefail

cd "$(dirname "$0")/.."

buf() {
	go tool -modfile=tools/go.mod buf "$@"
}

gen() {
	# Start from nothing so that a removed or renamed .proto leaves no stale
	# *.pb.go behind (buf's own clean option would delete proto/ itself).
	find proto -name '*.pb.go' -delete
	buf generate
}

check() {
	buf lint
	if ! buf format --diff --exit-code; then
		echo "proto.sh: .proto files are not formatted; run: go tool -modfile=tools/go.mod buf format -w" >&2
		exit 1
	fi
	gen
	if ! git diff --exit-code -- proto; then
		echo "proto.sh: proto/ differs from the commit after generation; run scripts/proto.sh gen and commit the .proto files with their generated code" >&2
		exit 1
	fi
	local untracked
	untracked=$(git ls-files --others --exclude-standard -- proto)
	if [[ -n $untracked ]]; then
		echo "proto.sh: files in proto/ are not committed:" >&2
		echo "$untracked" >&2
		exit 1
	fi
}

case "${1:-}" in
gen) gen ;;
check) check ;;
*)
	echo "usage: $0 gen|check" >&2
	exit 2
	;;
esac
