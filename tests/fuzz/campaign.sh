#!/usr/bin/env bash
# A fuzz campaign, on demand (README.md, "Fuzzing"): every libFuzzer target in
# tests/fuzz/fuzz_*.c, one at a time in one process (the machine is shared), until it
# has run RUNS inputs or for SECONDS_PER_TARGET, whichever comes first. Prints per target
# the executions, the rate, libFuzzer's coverage (cov: edges, ft: features),
# the corpus and the date, as Markdown rows for the README, and merges what
# adds coverage into the repository's corpus (-merge=1 -use_counters=0: only
# inputs that reach new edges, so the saved corpus stays small). A crash is kept under
# build-fuzz/artifacts/, counted and reported, and the target goes on.
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
  # A crash stops libFuzzer: it is kept, counted, and the target goes on from
  # its working corpus with what is left of its budget (at most 20 crashes).
  start="$(date +%s)"
  execs=0
  crashes=0
  first_crash=""
  last=/dev/null
  seg=0
  while :; do
    left_s=$((SECONDS_PER_TARGET - ($(date +%s) - start)))
    left_runs=$((RUNS - execs))
    [ "$left_s" -gt 0 ] && [ "$left_runs" -gt 0 ] || break
    rc=0
    # New inputs go to $work (the first directory); the repository's corpus seeds it.
    timeout --kill-after=30 $((left_s + 300)) "$BUILD/$t" -runs="$left_runs" -max_total_time="$left_s" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
      "${dict[@]}" "$work" "$corpus" >"$out.$seg" 2>&1 || rc=$?
    last="$out.$seg"
    n="$(final_stat "$last" number_of_executed_units)"
    [ "$n" = "?" ] || execs=$((execs + n))
    [ "$rc" -eq 0 ] && break
    crashes=$((crashes + 1))
    [ -n "$first_crash" ] || first_crash="$(grep -m1 -E 'INVARIANT|ERROR: [A-Za-z]|SUMMARY' "$last" | cut -c1-100) ($last)"
    [ "$crashes" -lt 20 ] || break
    seg=$((seg + 1))
  done
  elapsed=$(( $(date +%s) - start ))
  rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
  cov="$(field "$last" cov)"
  ft="$(field "$last" ft)"
  result="ok"
  if [ "$crashes" -gt 0 ]; then
    result="$crashes crash(es), first: $first_crash"
    failed=1
  fi
  [ "$execs" -lt "$RUNS" ] && result="$result; stopped by the ${SECONDS_PER_TARGET}s limit"
  added=0
  if [ "$MERGE" = 1 ]; then
    # Only inputs that reach new edges are kept, not new hit counts
    # (-use_counters=0): the same coverage in a corpus several times smaller.
    "$BUILD/$t" -merge=1 -use_counters=0 -rss_limit_mb=2048 -timeout=10 "$corpus" "$work" \
      >"$BUILD/campaign-$name.merge.log" 2>&1 || true
    added=$(( $(ls "$corpus" | wc -l) - before ))
  fi
  files="$(ls "$corpus" | wc -l)"
  bytes="$(cat "$corpus"/* 2>/dev/null | wc -c)"
  rm -rf "$work"
  row="| $name | $execs | $rate | $cov | $ft | $files files, $bytes bytes (+$added) | ${elapsed}s | $day | $result |"
  rows+=("$row")
  log "$row"
done

echo
echo "| target | executions | exec/s | cov | ft | saved corpus | time | date (UTC) | result |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "$r"; done
exit "$failed"
