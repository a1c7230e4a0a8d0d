#!/usr/bin/env bash
# CI smoke-fuzzing: every cargo-fuzz target for a fixed number of runs from the fixture seeds.
# Exits non-zero if any target crashes (panic, failed invariant, sanitizer report, timeout or
# OOM); the reproducer is left in fuzz/artifacts/<target>/.
#
#   FUZZ_RUNS=100000     libFuzzer -runs per target
#   FUZZ_MAX_TIME=30     seconds per target at most, whatever the run count (keeps CI bounded)
#   FUZZ_JOBS=<nproc>    targets fuzzed at once (libFuzzer itself is single-threaded)
#   FUZZ_TARGETS="a b"   a subset of targets
#   FUZZ_SEED=N          libFuzzer -seed (default: random; a crash report prints it)
#   FUZZ_TOOLCHAIN=name  rustup toolchain to build with (default: nightly if installed, else the
#                        default toolchain with RUSTC_BOOTSTRAP=1 for -Zsanitizer)
#   RMQ_FIXTURES=dir     fixtures to seed from (default remoting/tests/fixtures)
#
# Reproduce a crash: cargo +nightly fuzz run --release --debug-assertions <target> <artifact>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

runs="${FUZZ_RUNS:-100000}"
max_time="${FUZZ_MAX_TIME:-30}"
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run-ci.sh: installing cargo-fuzz (one-time, about a minute)"
  cargo install cargo-fuzz --locked
fi

# Seeds first, built like the rest of the workspace (before RUSTC_BOOTSTRAP may be set below).
./seed.sh

# -Zsanitizer needs a nightly compiler. Only registry packages can be installed here, not
# toolchains, so without a nightly the stable compiler is told to accept nightly flags.
tc=()
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
  tc=("+$FUZZ_TOOLCHAIN")
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  tc=(+nightly)
fi
if ! rustc ${tc[@]+"${tc[@]}"} --version | grep -q -- '-nightly'; then
  export RUSTC_BOOTSTRAP=1
fi
echo "run-ci.sh: $(rustc ${tc[@]+"${tc[@]}"} --version)${RUSTC_BOOTSTRAP:+ (RUSTC_BOOTSTRAP=1)}," \
  "$(cargo fuzz --version)"

build_flags=(--release --debug-assertions)
start=$(date +%s)
cargo ${tc[@]+"${tc[@]}"} fuzz build "${build_flags[@]}"
echo "run-ci.sh: build took $(($(date +%s) - start)) s"

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cargo fuzz list)
fi

# New inputs go to a scratch directory so corpus/ stays exactly the seeds.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fuzz_one() {
  local t=$1
  mkdir -p "$work/$t" "$here/corpus/$t"
  # cargo-fuzz itself points -artifact_prefix at fuzz/artifacts/<target>/.
  local args=(-runs="$runs" -max_total_time="$max_time" -timeout=10 -rss_limit_mb=2048
    -print_final_stats=1)
  [[ -n "${FUZZ_SEED:-}" ]] && args+=(-seed="$FUZZ_SEED")
  local t0
  t0=$(date +%s)
  if cargo ${tc[@]+"${tc[@]}"} fuzz run "${build_flags[@]}" "$t" "$work/$t" "$here/corpus/$t" -- "${args[@]}" \
    >"$work/$t.log" 2>&1; then
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    printf 'run-ci.sh: %-18s ok    %7s runs %4d s\n' "$t" "${execs:-?}" $(($(date +%s) - t0))
  else
    printf 'run-ci.sh: %-18s CRASH (%d s); log:\n' "$t" $(($(date +%s) - t0))
    grep -m1 'INFO: Seed:' "$work/$t.log" || true
    grep -v '^#[0-9]' "$work/$t.log" | tail -60
    return 1
  fi
}

failed=()
pids=()
names=()
reap() {
  # Waits for the oldest running target.
  local pid=${pids[0]} name=${names[0]}
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  wait "$pid" || failed+=("$name")
}
for t in "${targets[@]}"; do
  while ((${#pids[@]} >= jobs)); do reap; done
  fuzz_one "$t" &
  pids+=($!)
  names+=("$t")
done
while ((${#pids[@]} > 0)); do reap; done

echo "run-ci.sh: fuzzing took $(($(date +%s) - start)) s in all (build included)"
if ((${#failed[@]} > 0)); then
  echo "run-ci.sh: FAILED: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo "run-ci.sh: ${#targets[@]} targets, no crash"
