#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each one in turn, bounded.
#
# Usage (from anywhere in the repository):
#   bash fuzz/run.sh [SECONDS] [TARGET...]      # time-bounded: SECONDS per target (default 10)
#   bash fuzz/run.sh --runs N [TARGET...]       # execution-bounded: N inputs per target
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz if it is missing. Targets run one at a time, each as a single
# in-process libFuzzer worker (cargo fuzz's default `--jobs 1`: no -fork, no
# -jobs, which would only add a supervisor process and redirect the worker's
# output to fuzz-0.log), with the checked-in seeds (fuzz/seeds/<target>, read only)
# and a working corpus (fuzz/corpus/<target>, git-ignored, created as needed:
# new inputs go there, never into the seeds). Crash inputs land in
# fuzz/artifacts/<target>/, logs in fuzz/target/logs/<target>.log.
# Exits non-zero if any target crashed; prints one summary line per target.
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

seconds=10
runs=
case "${1:-}" in
--runs)
    [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage
    runs=$2
    shift 2
    ;;
-h | --help) usage ;;
'') ;;
*)
    if [[ $1 =~ ^[0-9]+$ ]]; then
        seconds=$1
        shift
    fi
    ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh needs the nightly toolchain: rustup toolchain install nightly --profile minimal" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Release build with debug assertions (overflow checks in every parser) and
# AddressSanitizer; `run` must get the same flags or it rebuilds.
build_flags=(--debug-assertions)
cargo +nightly fuzz build "${build_flags[@]}"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

if [[ -n $runs ]]; then
    bound=(-runs="$runs")
else
    bound=(-max_total_time="$seconds")
fi

logs=fuzz/target/logs
mkdir -p "$logs"
summary=()
failed=()
for target in "${targets[@]}"; do
    seeds=fuzz/seeds/$target
    work=fuzz/corpus/$target
    [[ -d $seeds ]] || { echo "no seed directory $seeds" >&2; exit 2; }
    mkdir -p "$work" "fuzz/artifacts/$target"
    log=$logs/$target.log
    if [[ -n $runs ]]; then bound_text="$runs runs"; else bound_text="$seconds s"; fi
    echo "=== $target ($bound_text)" >&2
    start=$(date +%s)
    set +e
    cargo +nightly fuzz run "${build_flags[@]}" "$target" "$work" "$seeds" -- \
        "${bound[@]}" -timeout=30 -print_final_stats=1 2>&1 | tee "$log" |
        grep -E --line-buffered '^(#[0-9]+[[:space:]]+(INITED|DONE)|==[0-9]+==|SUMMARY|Done|thread .* panicked|Test unit written|Failing input)' >&2
    rc=${PIPESTATUS[0]}
    set -e
    status=ok
    [[ $rc -eq 0 ]] || status="CRASH(rc=$rc)"
    elapsed=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -nE 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+cov: ([0-9]+).*/\1/p' "$log" | tail -1)
    line=$(printf '%-14s %-6s execs=%-10s exec/s=%-7s time=%ss cov=%s' \
        "$target" "$status" "${execs:-?}" "${rate:-?}" "$elapsed" "${cov:-?}")
    summary+=("$line")
    [[ $status == ok ]] || failed+=("$target")
done

echo "=== summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'))" >&2
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/, logs in $logs/)" >&2
    exit 1
fi
