#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), seeded from fuzz/seeds/<target>/.
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or RUSTC_BOOTSTRAP=1
# with the stable one. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "== $target ($secs s)"
    cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- -max_total_time="$secs" -rss_limit_mb=2048
done
