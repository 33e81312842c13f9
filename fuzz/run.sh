#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after SECONDS) for SECONDS each (default 60), one
# at a time under `nice`, seeded from fuzz/seeds/<target>/ and growing fuzz/corpus/<target>/.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works with the stable toolchain (see below).
# Crashes land in fuzz/artifacts/<target>/; the other targets still run, and the exit status is 1.
# A summary line per target (executions/s, coverage, corpus size) is printed at the end.
#
#   fuzz/run.sh 60                 # every target, 60 s each
#   fuzz/run.sh 600 dns tls_facts  # two targets, 10 minutes each
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true

# cargo-fuzz passes -Z flags to rustc: allowed on nightly, and on stable with RUSTC_BOOTSTRAP=1
# (harmless on nightly). FUZZ_TOOLCHAIN=nightly picks a toolchain explicitly.
export RUSTC_BOOTSTRAP=1
cargo_fuzz=(cargo fuzz)
[ -n "${FUZZ_TOOLCHAIN:-}" ] && cargo_fuzz=(cargo "+$FUZZ_TOOLCHAIN" fuzz)

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo_fuzz[@]}" list)
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
"${cargo_fuzz[@]}" build -O >&2
summary=()
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "== $target ($secs s)"
    if ! nice "${cargo_fuzz[@]}" run -O "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2>"$logs/$target.log"; then
        # The panic message or sanitizer report, then libFuzzer's reproduction hints.
        grep -E -A4 "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer|^error" "$logs/$target.log" | head -n 30 || true
        grep -E "^(Failing input|	artifacts/)|cargo fuzz (run|tmin)" "$logs/$target.log" || true
        summary+=("$target: CRASH (see fuzz/artifacts/$target/)")
        status=1
        continue
    fi
    # Last status line of libFuzzer, e.g. "#123456 DONE cov: 812 ft: 2301 corp: 190/40Kb ... exec/s: 2049"
    last=$(grep -E '^#[0-9]+' "$logs/$target.log" | tail -n 1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$logs/$target.log" | tail -n 1 || true)
    rate=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$last")
    summary+=("$target: ${execs:-?} runs, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}")
done
echo "== summary ($secs s per target)"
printf '  %s\n' "${summary[@]}"
exit "$status"
