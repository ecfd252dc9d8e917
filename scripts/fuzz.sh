#!/usr/bin/env bash
# Runs every fuzz target. "short" runs each for a few seconds (CI);
# otherwise each runs for FUZZ_EXECS executions (default 1,000,000).
# Crashers land in the package's testdata/fuzz/ and become regression seeds
# for every later `go test`: commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
budget="${FUZZ_EXECS:-1000000}x"
[ "$mode" = short ] && budget=5s
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "fuzz $pkg $target ($budget)"
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$budget"
  done
done
