#!/usr/bin/env bash
# The whole benchmark (tests/bench/bench.py, every part), on demand, never in CI; prints one table.
#   tests/bench/run-all.sh                      # against build/ftpsgate of this tree
#   FTPSGATE_BIN=/path/to/ftpsgate tests/bench/run-all.sh
# Knobs (BENCH_PARTS, BENCH_REPS, ...): see bench.py. As root, after tests/setup-deps.sh and
# tests/bench/setup-bench.sh. About 15 minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
export FTPSGATE_BIN="${FTPSGATE_BIN:-$root/build/ftpsgate}"
[ -x "$FTPSGATE_BIN" ] || { echo "run-all.sh: no ftpsgate at $FTPSGATE_BIN (build it, or set FTPSGATE_BIN)" >&2; exit 1; }
for tool in socat curl openssl cc perf; do
  command -v "$tool" >/dev/null || { echo "run-all.sh: $tool missing (tests/bench/setup-bench.sh)" >&2; exit 1; }
done
exec /usr/bin/python3 "$root/tests/bench/bench.py"
