#!/usr/bin/env bash
# Runs every native Go fuzz target of the module for a short time (FUZZTIME, default
# 10s): a smoke test that the fuzzers start and find nothing quickly. Seed corpora and
# testdata/fuzz regressions already run as part of plain `go test`.
#
# A bare "context deadline exceeded" with no failing input is the Go fuzzing
# coordinator's shutdown race at the -fuzztime boundary (golang/go#75804), not a finding:
# such a target is run again, up to three times in all, and fails if every run ends so.
# On a loaded machine two in a row happen (FuzzDecapPaths in CI: its workers fuzzed on
# and reported nothing before the deadline). Anything else that exits non-zero — a
# written failing input, a panic, a t.Error — fails at once.
set -euo pipefail
fuzztime=${FUZZTIME:-10s}
status=0
count=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

bare_deadline() {
  grep -q 'context deadline exceeded' "$1" &&
    ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:|fuzzing process hung' "$1"
}

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  for t in $targets; do
    count=$((count + 1))
    for try in 1 2 3; do
      echo "fuzz: $pkg $t ($fuzztime, try $try)"
      if go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
        break
      fi
      if [ "$try" -lt 3 ] && bare_deadline "$log"; then
        echo "fuzz: $t stopped with the coordinator's deadline race and no finding; once more"
        continue
      fi
      cat "$log"
      status=1
      break
    done
  done
done
echo "fuzz: $count targets run"
exit $status
