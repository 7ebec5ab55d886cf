#!/usr/bin/env bash
# make demo: the two-node vRouter demo (examples/vrouter/demo). Root required.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (namespaces, XDP)"; exit 1; }
mkdir -p bin
go build -o bin/ ./examples/vrouter ./examples/vhostpod ./examples/vrouter/demo
exec bin/demo -vrouter bin/vrouter -pod bin/vhostpod
