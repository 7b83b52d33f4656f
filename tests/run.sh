#!/usr/bin/env bash
# The whole test suite: the README's second quick-start command, and all that
# .ci/run calls.
#
#   1. tests/setup-deps.sh            Debian packages, vsftpd unpacked privately
#   2. build/       normal build      + ctest (unit, fuzz-corpus replay, integration)
#   3. build-asan/  ASan+UBSan build  + the same ctest, with leak detection on
#   4. build-fuzz/  libFuzzer targets (clang), each run for $FUZZ_SECONDS s
#
# Every suite runs even when an earlier one failed; each is bounded in time, and
# the whole run is held under $RUN_BUDGET seconds (CI allows 40 minutes on 2
# cores, set-up included; a clean run takes about 20). The last line is "N passed, N failed", counting suites.
#
# Env: JOBS (2), FUZZ_SECONDS (15), RUN_BUDGET (2100), BUILD_ROOT (the repo: where
#      build/, build-asan/ and build-fuzz/ go), SKIP_SETUP=1 (no apt),
#      SKIP_ASAN=1, SKIP_FUZZ=1 (for quick local runs; CI sets none of them).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

BUILD_ROOT="${BUILD_ROOT:-$ROOT}"
JOBS="${JOBS:-2}"
FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
RUN_BUDGET="${RUN_BUDGET:-2100}"
START="$(date +%s)"
DEADLINE=$((START + RUN_BUDGET))

passed=0
failed=0
results=()

log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Seconds left for a step that may take at most $1 s; 0 when the budget is spent.
budget() {
  local want="$1" left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt 0 ] && left=0
  [ "$want" -lt "$left" ] && echo "$want" || echo "$left"
}

record() {  # name status(0 = pass) detail
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1)); results+=("PASS $1")
  else
    failed=$((failed + 1)); results+=("FAIL $1 ($3)")
  fi
}

# Runs "$@" under a time limit (the whole process group is signalled on expiry).
bounded() {
  local secs="$1"; shift
  if [ "$secs" -le 0 ]; then
    log "no time left in the ${RUN_BUDGET}s budget for: $*"
    return 124
  fi
  timeout --kill-after=20 "$secs" "$@"
}

build() {  # dir, cmake args...
  local dir="$1"; shift
  bounded "$(budget 900)" cmake -S "$ROOT" -B "$dir" "$@" \
    && bounded "$(budget 900)" cmake --build "$dir" -j "$JOBS"
}

run_ctest() {  # name dir
  local name="$1" dir="$2" rc=0 out skipped
  log "ctest in $dir"
  out="$dir/ctest-output.log"
  set +e
  ( cd "$dir" && bounded "$(budget 1200)" ctest --output-on-failure -j "$JOBS" ) 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  set -e
  # ctest passes a run with skipped tests: name them in the summary, so a skip is seen.
  skipped=$( { grep -E '\*\*\*(Skipped|Not Run)' "$out" || true; } |
             sed -E 's/.*Test +#[0-9]+: ([^ ]+).*\*\*\*([A-Za-z]+( Run)?)( \(([A-Za-z]+)\))?.*/\1 (\2 \5)/' |
             tr '\n' ' ')
  record "$name" "$rc" "ctest exit $rc"
  if [ -n "$skipped" ]; then results+=("     skipped in $name: $skipped"); fi
}

# ---- 1. dependencies ---------------------------------------------------------
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  log "setup-deps"
  rc=0
  bounded "$(budget 900)" bash "$ROOT/tests/setup-deps.sh" || rc=$?
  if [ "$rc" -ne 0 ]; then
    record "setup-deps" "$rc" "exit $rc"
  fi
fi

# ---- 2. normal build ---------------------------------------------------------
log "build (normal) in build/"
rc=0
build "$BUILD_ROOT/build" || rc=$?
if [ "$rc" -eq 0 ]; then
  run_ctest "ctest (normal build)" "$BUILD_ROOT/build"
else
  record "ctest (normal build)" "$rc" "build failed, exit $rc"
fi

# ---- 3. ASan + UBSan build -----------------------------------------------------
if [ "${SKIP_ASAN:-0}" != 1 ]; then
  log "build (ASan+UBSan) in build-asan/"
  rc=0
  build "$BUILD_ROOT/build-asan" -DFTPSGATE_SANITIZE=ON || rc=$?
  if [ "$rc" -eq 0 ]; then
    # The normal build runs the proxy with its default worker loops (one per CPU),
    # this one with a single loop: every test passes both ways (README "Workers").
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    FTPSGATE_TEST_WORKERS=1 \
      run_ctest "ctest (ASan+UBSan build, workers 1)" "$BUILD_ROOT/build-asan"
  else
    record "ctest (ASan+UBSan build)" "$rc" "build failed, exit $rc"
  fi
fi

# ---- 4. fuzz targets -----------------------------------------------------------
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  if command -v clang >/dev/null 2>&1; then
    targets=()
    for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
      [ -e "$src" ] || continue
      targets+=("$(basename "$src" .c)")
    done
    if [ "${#targets[@]}" -gt 0 ]; then
      log "build (libFuzzer, clang) in build-fuzz/: ${targets[*]}"
      rc=0
      # FTPSGATE_FUZZ instruments the library too (fuzzer-no-link, CMakeLists.txt), so
      # libFuzzer is guided by the parsers' own branches, not only the driver's.
      CC=clang bounded "$(budget 900)" cmake -S "$ROOT" -B "$BUILD_ROOT/build-fuzz" -DFTPSGATE_FUZZ=ON \
          -DFTPSGATE_INTEGRATION=OFF || rc=$?
      if [ "$rc" -eq 0 ]; then
        bounded "$(budget 900)" cmake --build "$BUILD_ROOT/build-fuzz" -j "$JOBS" --target "${targets[@]}" || rc=$?
      fi
      if [ "$rc" -ne 0 ]; then
        record "fuzz build" "$rc" "exit $rc"
      else
        mkdir -p "$BUILD_ROOT/build-fuzz/artifacts"
        for t in "${targets[@]}"; do
          parser="${t#fuzz_}"
          work="$(mktemp -d "${TMPDIR:-/tmp}/ftpsgate-fuzz-$parser.XXXXXX")"
          seeds=()
          [ -d "$ROOT/tests/fuzz/corpus/$parser" ] && seeds+=("$ROOT/tests/fuzz/corpus/$parser")
          dict=()
          [ -f "$ROOT/tests/fuzz/$parser.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$parser.dict")
          log "fuzz $t for ${FUZZ_SECONDS}s"
          rc=0
          # New inputs go to the temp dir (first corpus dir); the repo's corpus is read only.
          ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
          UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
            bounded "$(budget $((FUZZ_SECONDS + 60)))" "$BUILD_ROOT/build-fuzz/$t" \
              -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 \
              -artifact_prefix="$BUILD_ROOT/build-fuzz/artifacts/$t-" "${dict[@]}" "$work" "${seeds[@]}" \
              > "$BUILD_ROOT/build-fuzz/$t.log" 2>&1 || rc=$?
          tail -3 "$BUILD_ROOT/build-fuzz/$t.log"
          [ "$rc" -ne 0 ] && tail -40 "$BUILD_ROOT/build-fuzz/$t.log"
          record "$t (${FUZZ_SECONDS}s)" "$rc" "exit $rc, see build-fuzz/$t.log"
          rm -rf "$work"
        done
      fi
    fi
  else
    log "clang not found: fuzz targets not run"
  fi
fi

# ---- summary ---------------------------------------------------------------------
echo
log "suites (in $(( $(date +%s) - START ))s):"
for r in "${results[@]}"; do echo "  $r"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
