#!/usr/bin/env bash
# Runs every fuzz target. "short" runs each for 20,000 executions (CI: a
# few seconds each); otherwise each runs for FUZZ_EXECS executions
# (default 1,000,000). Budgets are counts, not durations: with a duration,
# Go 1.26's fuzz coordinator can report "context deadline exceeded" as a
# failure when the time runs out (golang/go#75804), with no crasher.
# Crashers land in the package's testdata/fuzz/ and become regression seeds
# for every later `go test`: commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
budget="${FUZZ_EXECS:-1000000}x"
[ "$mode" = short ] && budget=20000x
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "fuzz $pkg $target ($budget)"
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$budget"
  done
done
