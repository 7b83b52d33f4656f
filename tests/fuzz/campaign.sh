#!/usr/bin/env bash
# A fuzz campaign, on demand (README.md, "Fuzzing"): every libFuzzer target in
# tests/fuzz/fuzz_*.c, one at a time (-jobs=1: the machine is shared), until it
# has run RUNS inputs or for SECONDS, whichever comes first. Prints per target
# the executions, the rate, libFuzzer's coverage (cov: edges, ft: features),
# the corpus and the date, as Markdown rows for the README, and merges what
# adds coverage into the repository's corpus (-merge=1: only inputs with new
# features, so the saved corpus stays small). A crash is kept under
# build-fuzz/artifacts/ and reported; the campaign goes on with the next target.
#
#   tests/fuzz/campaign.sh [target...]      (default: every target)
#
# Env: RUNS (10000000), SECONDS_PER_TARGET (1800), MERGE (1; 0 leaves the corpus
#      alone), BUILD_ROOT (the repo: build-fuzz/ goes there), JOBS (2, for the build).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD_ROOT="${BUILD_ROOT:-$ROOT}"
BUILD="$BUILD_ROOT/build-fuzz"
RUNS="${RUNS:-10000000}"
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-1800}"
MERGE="${MERGE:-1}"
JOBS="${JOBS:-2}"

log() { printf '[campaign %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v clang >/dev/null 2>&1 || { log "clang is needed (apt-get install clang)"; exit 1; }

targets=()
if [ "$#" -gt 0 ]; then
  for t in "$@"; do targets+=("fuzz_${t#fuzz_}"); done
else
  for src in "$ROOT"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi

log "build (libFuzzer, clang) in $BUILD: ${targets[*]}"
CC=clang cmake -S "$ROOT" -B "$BUILD" -DFTPSGATE_FUZZ=ON -DFTPSGATE_INTEGRATION=OFF >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" >/dev/null
mkdir -p "$BUILD/artifacts"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# The last value of "key: value" in libFuzzer's status lines (e.g. cov, ft).
field() { grep -E "^#[0-9]+" "$1" | tail -1 | grep -oE "$2: [0-9]+" | tail -1 | grep -oE '[0-9]+$' || echo "?"; }
final_stat() { grep -E "^stat::$2:" "$1" | tail -1 | grep -oE '[0-9]+$' || echo "?"; }

rows=()
failed=0
for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  corpus="$ROOT/tests/fuzz/corpus/$name"
  mkdir -p "$corpus"
  work="$(mktemp -d "${TMPDIR:-/tmp}/ftpsgate-campaign-$name.XXXXXX")"
  dict=()
  [ -f "$ROOT/tests/fuzz/$name.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$name.dict")
  out="$BUILD/campaign-$name.log"
  before="$(ls "$corpus" | wc -l)"
  day="$(date -u +%Y-%m-%d)"
  log "$t: up to $RUNS executions or ${SECONDS_PER_TARGET}s"
  rc=0
  # New inputs go to $work (the first directory); the repository's corpus seeds it.
  timeout --kill-after=30 $((SECONDS_PER_TARGET + 300)) "$BUILD/$t" -runs="$RUNS" \
    -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -workers=1 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" "${dict[@]}" "$work" "$corpus" \
    >"$out" 2>&1 || rc=$?
  execs="$(final_stat "$out" number_of_executed_units)"
  rate="$(final_stat "$out" average_exec_per_sec)"
  cov="$(field "$out" cov)"
  ft="$(field "$out" ft)"
  result="ok"
  if [ "$rc" -ne 0 ]; then
    result="CRASH or error (exit $rc): $(grep -m1 -E 'INVARIANT|ERROR|SUMMARY' "$out" | cut -c1-120), see $out"
    failed=1
  elif [ "$execs" != "?" ] && [ "$execs" -lt "$RUNS" ]; then
    result="time limit before $RUNS executions"
  fi
  added=0
  if [ "$MERGE" = 1 ] && [ "$rc" -eq 0 ]; then
    "$BUILD/$t" -merge=1 -rss_limit_mb=2048 -timeout=10 "$corpus" "$work" >"$BUILD/campaign-$name.merge.log" 2>&1 || true
    added=$(( $(ls "$corpus" | wc -l) - before ))
  fi
  files="$(ls "$corpus" | wc -l)"
  kib="$(du -sk "$corpus" | cut -f1)"
  rm -rf "$work"
  row="| $name | $execs | $rate | $cov | $ft | $files files, ${kib} KiB (+$added) | $day | $result |"
  rows+=("$row")
  log "$row"
done

echo
echo "| target | executions | exec/s | cov | ft | saved corpus | date (UTC) | result |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "$r"; done
exit "$failed"
