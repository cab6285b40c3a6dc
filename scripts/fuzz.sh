#!/usr/bin/env bash
# Build the libFuzzer targets of fuzz/ (clang, ASan + UBSan, EMPORIUM_FUZZ=ON) in their own
# build directory and run each for a bounded time, starting from the corpus kept in the repo.
#
#   scripts/fuzz.sh [TARGET...]          e.g. scripts/fuzz.sh json   (default: all of them)
#
# Environment:
#   EMPORIUM_FUZZ_BUILD_DIR   build directory (default build-fuzz; relative to the repository root)
#   EMPORIUM_FUZZ_SECONDS     how long each target runs (default 60)
#   EMPORIUM_JOBS             build parallelism (default 2)
#
# New inputs are kept in the build directory, never written into fuzz/corpus. When a target
# fails, the input that did it is in BUILD/fuzz-work/TARGET/artifacts/: copy it into
# fuzz/regressions/TARGET/ (ctest replays that folder in every build) and fix the bug.
# Prints one line per target: "fuzz: TARGET: N executions in S s ...".
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$EMPORIUM_ROOT"

# Only this script needs clang and its libFuzzer runtime (lib.sh's convention: append here).
EMPORIUM_DEPS+=(clang libclang-rt-14-dev llvm)
emporium_ensure_deps

build_dir="${EMPORIUM_FUZZ_BUILD_DIR:-build-fuzz}"
[[ "$build_dir" == /* ]] || build_dir="$EMPORIUM_ROOT/$build_dir"
seconds="${EMPORIUM_FUZZ_SECONDS:-60}"
targets=("$@")
((${#targets[@]})) || targets=(http_request target json cursor feed_command)

export CCACHE_DIR="${CCACHE_DIR:-$EMPORIUM_ROOT/.local/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$EMPORIUM_ROOT}"
mkdir -p "$CCACHE_DIR"
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  emporium_log "configuring $build_dir (clang, EMPORIUM_FUZZ=ON)"
  cmake -S "$EMPORIUM_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DEMPORIUM_FUZZ=ON -DEMPORIUM_BUILD_BENCH=OFF >/dev/null || {
    emporium_err "cmake configure failed for $build_dir"
    exit 1
  }
fi
emporium_log "building the fuzzers in $build_dir with ${EMPORIUM_JOBS:-2} jobs"
cmake --build "$build_dir" -j "${EMPORIUM_JOBS:-2}" --target fuzzers || {
  emporium_err "building the fuzzers failed"
  exit 1
}

# Reports name their source lines; a report is always a failure.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
total=0
# The per-target lines again, for .ci/run's summary.
summary="$build_dir/fuzz-summary.txt"
: >"$summary"
for t in "${targets[@]}"; do
  bin="$build_dir/fuzz/fuzz_$t"
  if [[ ! -x "$bin" ]]; then
    emporium_err "no fuzz target '$t' (have: http_request target json cursor feed_command)"
    exit 2
  fi
  work="$build_dir/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -R "$EMPORIUM_ROOT/fuzz/corpus/$t/." "$work/corpus/"
  dict=()
  [[ -f "$EMPORIUM_ROOT/fuzz/dict/$t.dict" ]] && dict=(-dict="$EMPORIUM_ROOT/fuzz/dict/$t.dict")
  log="$work/fuzz.log"
  status=0
  # The first folder receives new inputs; regressions/ is read only.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${dict[@]}" \
    "$work/corpus" "$EMPORIUM_ROOT/fuzz/regressions/$t" >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  secs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
  inputs="$(find "$work/corpus" -type f | wc -l)"
  seeds="$(find "$EMPORIUM_ROOT/fuzz/corpus/$t" -type f | wc -l)"
  if ((status != 0)); then
    failed+=("$t")
    emporium_err "fuzz: $t FAILED (exit $status) after ${execs:-?} executions; the input:"
    ls -l "$work/artifacts" >&2 || true
    emporium_log_tail "$log" 60
    echo "fuzz: $t: FAILED after ${execs:-?} executions; copy the input from $work/artifacts/ into fuzz/regressions/$t/" | tee -a "$summary"
  else
    total=$((total + ${execs:-0}))
    echo "fuzz: $t: ${execs:-?} executions in $seconds s (${secs:-?}/s), corpus $seeds seeds -> $inputs inputs, no failure" | tee -a "$summary"
  fi
done
if ((${#failed[@]})); then
  emporium_err "fuzzing found failures in: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean, $total executions in all" | tee -a "$summary"
