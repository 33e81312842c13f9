#!/usr/bin/env bash
# Flood memory benchmark (issue #9): peak RSS of `tunnelwatch flows` over a flood of MILLIONS
# million distinct one-packet flows (TCP SYNs and UDP datagrams, examples/flood.rs) with a few
# long legitimate flows, at the default --max-flows and at a small cap.
# usage: benches/flood.sh [MILLIONS=2] [SMALL_CAP=10000]
# Prints per run: flows created, evicted, peak live, peak RSS (/usr/bin/time) and peak anonymous
# RSS (sampled from /proc: the mapped capture's pages excluded); then the bytes per live flow,
# (anon RSS at the default cap - at the small cap) / (default cap - small cap): both runs read
# the same packets and emit the same records, so the difference is the flow table alone; and
# the memory per finished flow beyond that (small since `flows` spills sorted runs to disk).
set -euo pipefail
millions=${1:-2}
small_cap=${2:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# The same target directory as compare.sh, apart from the default build's (see there).
bin=target/bench-no-default
cargo build --release --no-default-features --quiet --target-dir "$bin" --bin tunnelwatch --example flood
tw=$bin/release/tunnelwatch
flood_flows=$(awk -v m="$millions" 'BEGIN{printf "%d", m*1000000}')
cap_file=${TMPDIR:-/tmp}/tunnelwatch-flood-$flood_flows.pcap
if [ ! -s "$cap_file" ]; then
  "$bin"/release/examples/flood "$cap_file" "$flood_flows" | head -1
fi
default_cap=$("$tw" flows --help | sed -n 's/.*--max-flows.*\[default: \([0-9]*\)\].*/\1/p' | head -1)
default_cap=${default_cap:-500000}
echo "capture: $cap_file ($(stat -c %s "$cap_file") bytes, $flood_flows flood flows); $(nproc) cores"

tfile=$(mktemp)
efile=$(mktemp)
trap 'rm -f "$tfile" "$efile"' EXIT
declare -A rss anon
printf '%-22s %10s %10s %10s %12s %12s %8s\n' run flows evicted "peak live" "peak RSS MB" "anon MB" seconds
measure() { # name, extra args...
  local name=$1
  shift
  /usr/bin/time -o "$tfile" -f "%e %M" "$tw" flows "$@" --format csv -q --json >/dev/null 2>"$efile" &
  local timer=$! pid="" peak_anon=0 a
  # Peak RSS counts the pages of the memory-mapped capture too; sample the anonymous part
  # (heap: flow table and records) from /proc to tell them apart.
  while kill -0 "$timer" 2>/dev/null; do
    [ -n "$pid" ] || pid=$(pgrep -P "$timer" || true)
    if [ -n "$pid" ]; then
      a=$(awk '/^RssAnon/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$a" ] && [ "$a" -gt "$peak_anon" ] && peak_anon=$a
    fi
    sleep 0.02
  done
  wait "$timer"
  local summary
  summary=$(grep '^{' "$efile" | tail -1)
  field() { printf '%s' "$summary" | tr ',' '\n' | sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" | head -1; }
  read -r secs kb < <(tail -1 "$tfile")
  rss[$name]=$kb
  anon[$name]=$peak_anon
  printf '%-22s %10s %10s %10s %12.1f %12.1f %8s\n' "$name" "$(field flows)" "$(field flows_evicted)" \
    "$(field peak_live_flows)" "$(awk -v k="$kb" 'BEGIN{print k/1024}')" \
    "$(awk -v k="$peak_anon" 'BEGIN{print k/1024}')" "$secs"
}
small_file=${TMPDIR:-/tmp}/tunnelwatch-flood-1000.pcap
[ -s "$small_file" ] || "$bin"/release/examples/flood "$small_file" 1000 >/dev/null
base="baseline (1k flows)"
small="cap $small_cap"
full="cap $default_cap (default)"
measure "$base" "$small_file"
measure "$small" "$cap_file" --max-flows "$small_cap"
measure "$full" "$cap_file" --max-flows "$default_cap"
echo "(peak live is the largest per-thread table; the cap is split between the threads)"
awk -v a="${anon[$full]}" -v b="${anon[$small]}" -v base="${anon[$base]}" \
  -v ca="$default_cap" -v cb="$small_cap" -v n="$flood_flows" 'BEGIN{
  printf "bytes per live flow (flow table, anon RSS at default cap - at small cap): %.0f\n", (a-b)*1024/(ca-cb);
  printf "bytes per finished flow beyond the table (spilled to disk; small cap - baseline, per flow): %.0f\n", (b-base)*1024/n;
}'
