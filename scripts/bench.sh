#!/usr/bin/env bash
# Runs dpkit's benchmarks, and the peer benchmarks of the bench/ module, COUNT times each
# and prints them as a benchstat table. Raw results go to out/bench-*.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p out
bench=${BENCH:-.}
count=${COUNT:-5}
go test -run '^$' -bench "$bench" -benchmem -count "$count" ./... | tee out/bench-dpkit.txt
if [ -f bench/go.mod ]; then
  (cd bench && go test -run '^$' -bench "$bench" -benchmem -count "$count" ./...) | tee out/bench-peers.txt
  for s in bench/*.sh; do [ -x "$s" ] && "$s" | tee -a out/bench-peers.txt; done
fi
echo
"$root/.cache/bin/benchstat" out/bench-*.txt
