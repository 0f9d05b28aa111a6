#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_RUNS iterations (at most FUZZ_MAX_SECS
# seconds each) and prints iterations, execs/s and crashes per target.
#
#   fuzz/run.sh              run (what `make fuzz` calls)
#   fuzz/run.sh cmin TARGET  minimize fuzz/corpus/TARGET in place
#
# Settings (environment):
#   FUZZ_RUNS=1000000     iterations per target (libFuzzer -runs)
#   FUZZ_MAX_SECS=0       time cap per target in seconds, 0 = none (-max_total_time)
#   FUZZ_TIMEOUT=30       seconds one input may take before it counts as a crash
#   FUZZ_TARGETS="a b"    a subset (default: every fuzz/fuzz_targets/*.rs)
#   FUZZ_TARGET_DIR=dir   cargo target dir of the nightly build (default fuzz/target)
#
# libFuzzer keeps what it finds in a scratch corpus under the target dir; the
# committed seeds in fuzz/corpus/<target>/ are only read. A crash is written to
# fuzz/artifacts/<target>/ (commit it: the stable replay tests in `make test` feed
# it to the same function again). Exits 1 when a target crashed, 2 when nightly or
# cargo-fuzz is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_RUNS=${FUZZ_RUNS:-1000000}
FUZZ_MAX_SECS=${FUZZ_MAX_SECS:-0}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-30}
FUZZ_TARGET_DIR=$(realpath -m "${FUZZ_TARGET_DIR:-fuzz/target}")

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "make fuzz: the nightly toolchain is missing (cargo-fuzz needs it): rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "make fuzz: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)" >&2
  if ! cargo install cargo-fuzz --locked; then
    echo "make fuzz: cargo-fuzz could not be installed; install it by hand: cargo install cargo-fuzz" >&2
    exit 2
  fi
fi

fuzz() { cargo +nightly fuzz "$@"; }

if [[ ${1:-} == cmin ]]; then
  target=${2:?usage: fuzz/run.sh cmin TARGET}
  fuzz cmin --target-dir "$FUZZ_TARGET_DIR" --codegen-units 16 "$target" "fuzz/corpus/$target"
  exit 0
fi

targets=${FUZZ_TARGETS:-$(basename -s .rs fuzz/fuzz_targets/*.rs)}
logs="$FUZZ_TARGET_DIR/fuzz-logs"
scratch="$FUZZ_TARGET_DIR/fuzz-corpus"
mkdir -p "$logs" "$scratch"

# 16 codegen units: a little slower per execution than cargo-fuzz's default of 1,
# but the sanitized release build of the AWS SDK takes a fraction of the time.
build_flags=(--target-dir "$FUZZ_TARGET_DIR" --codegen-units 16)
echo "building the fuzz targets (nightly, address sanitizer; log $logs/build.log)..."
fuzz build "${build_flags[@]}" >"$logs/build.log" 2>&1 || { tail -n 30 "$logs/build.log"; exit 1; }

# Crash-like files libFuzzer writes into a target's artifact directory.
artifacts() { find "fuzz/artifacts/$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) 2>/dev/null | sort; }

rows=()
failed=0
for target in $targets; do
  mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
  before=$(artifacts "$target")
  echo "fuzzing $target: $FUZZ_RUNS runs${FUZZ_MAX_SECS:+, at most ${FUZZ_MAX_SECS}s} (log $logs/$target.log)"
  start=$SECONDS
  status=0
  # cargo-fuzz writes crashes to fuzz/artifacts/<target>/ itself.
  fuzz run "${build_flags[@]}" "$target" "$scratch/$target" "$PWD/fuzz/corpus/$target" -- \
    -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_MAX_SECS" -timeout="$FUZZ_TIMEOUT" \
    -print_final_stats=1 >"$logs/$target.log" 2>&1 || status=$?
  secs=$((SECONDS - start))
  # libFuzzer's final statistics; "Done N runs in S second(s)" when it ran out its
  # runs or its time, the stat:: lines in every case.
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -n 1)
  if [[ -z $runs ]]; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$logs/$target.log" | tail -n 1)
  fi
  new=$(comm -13 <(echo "$before") <(artifacts "$target") | sed '/^$/d')
  crashes=$(printf '%s' "$new" | grep -c . || true)
  if ((status != 0 && crashes == 0)); then
    crashes="?"  # it stopped without leaving an input: see the log
  fi
  if [[ $crashes != 0 ]]; then
    failed=1
    echo "  $target stopped (exit $status); new artifacts:"
    printf '    %s\n' $new
    grep -m 3 -E '^(thread .* panicked|==[0-9]+==ERROR|SUMMARY)' "$logs/$target.log" | sed 's/^/    /' || true
  fi
  rows+=("$(printf '%-20s %12s %10s %8s %7ss' "$target" "${runs:-?}" "${rate:-?}" "$crashes" "$secs")")
done

echo
printf '%-20s %12s %10s %8s %8s\n' target iterations execs/s crashes time
printf '%s\n' "${rows[@]}"
exit "$failed"
