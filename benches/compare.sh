#!/usr/bin/env bash
# Side-by-side throughput on one capture, in one run (compare ratios, not absolute figures):
# tunnelwatch (1 thread and all threads), a bare record walk, and the peers when installed:
# ndpiReader (libndpi-bin), tshark -q, tcpdump -w /dev/null.
# usage: benches/compare.sh CAPTURE [RUNS=3]
# Prints packets/s, MB/s and peak RSS per tool (median of RUNS) and the ratio to ndpiReader,
# then the thread scaling as the median ratio of RUNS interleaved one-thread/all-thread pairs,
# next to the machine's own ceiling (one one-thread run per core at once, against one alone).
set -euo pipefail
cap=${1:?usage: benches/compare.sh CAPTURE [RUNS]}
runs=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# A target directory of its own: a build without default features would otherwise replace the
# default build's binary in target/release (and the next default build would replace this one).
bin=target/bench-no-default
cargo build --release --no-default-features --quiet --target-dir "$bin" --bin tunnelwatch --example record_walk
tw=$bin/release/tunnelwatch
walk=$bin/release/examples/record_walk
packets=$("$walk" "$cap" | awk '{print $1}')
mb=$(awk -v b="$(stat -c %s "$cap")" 'BEGIN{printf "%.1f", b/1e6}')
cores=$(nproc)
echo "capture: $cap ($packets packets, $mb MB), $runs runs each, median; $cores cores"

declare -A label cmd
order=()
add() { order+=("$1"); label[$1]=$2; cmd[$1]=$3; }
add walk "record walk (floor)" "$walk $cap"
add tw1 "tunnelwatch --threads 1" "$tw flows $cap --format jsonl --threads 1 -q"
add twN "tunnelwatch --threads $cores" "$tw flows $cap --format jsonl --threads $cores -q"
command -v ndpiReader >/dev/null && add ndpi "ndpiReader -q" "ndpiReader -q -i $cap"
command -v tshark >/dev/null && add tshark "tshark -q" "tshark -q -r $cap"
command -v tcpdump >/dev/null && add tcpdump "tcpdump -w /dev/null" "tcpdump -r $cap -w /dev/null"

declare -A secs rss
tfile=$(mktemp)
trap 'rm -f "$tfile"' EXIT
for k in "${order[@]}"; do
  times=(); mems=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -o "$tfile" -f "%e %M" ${cmd[$k]} >/dev/null 2>&1 || true
    out=$(tail -1 "$tfile")
    times+=("${out% *}"); mems+=("${out#* }")
  done
  secs[$k]=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  rss[$k]=$(printf '%s\n' "${mems[@]}" | sort -g | tail -1)
done

printf '%-28s %10s %12s %10s %12s %14s\n' tool seconds packets/s MB/s "peak RSS MB" "x ndpiReader"
for k in "${order[@]}"; do
  s=${secs[$k]}
  pps=$(awk -v p="$packets" -v s="$s" 'BEGIN{printf "%.0f", (s>0)?p/s:0}')
  mbs=$(awk -v m="$mb" -v s="$s" 'BEGIN{printf "%.1f", (s>0)?m/s:0}')
  ratio="-"
  if [ -n "${secs[ndpi]:-}" ]; then ratio=$(awk -v a="${secs[ndpi]}" -v s="$s" 'BEGIN{printf "%.2f", (s>0)?a/s:0}'); fi
  printf '%-28s %10s %12s %10s %12.1f %14s\n' "${label[$k]}" "$s" "$pps" "$mbs" "$(awk -v r="${rss[$k]}" 'BEGIN{print r/1024}')" "$ratio"
done

# Thread scaling from interleaved rounds: on a shared VM the speed drifts between the blocks of
# runs above, and a ratio of two medians taken minutes apart inherits that drift; the median of
# per-round ratios does not. Each round also runs $cores one-thread runs at once, next to one
# alone: how much faster $cores independent processes get through the same work is what the
# machine itself allows on $cores cores (a VM's vCPUs share caches, memory bandwidth and
# sometimes physical cores), the ceiling the thread scaling is to be read against.
median_quartiles() {
  sort -g | awk '{r[NR]=$1} END{q3=int(3*NR/4)+1; if (q3>NR) q3=NR; printf "median %.2fx (quartiles %.2f-%.2f)", r[int((NR+1)/2)], r[int(NR/4)+1], r[q3]}'
}
# Wall-clock seconds of a command, to the microsecond (/usr/bin/time gives hundredths).
wall() {
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null 2>&1 || true
  end=$(date +%s%N)
  awk -v a="$start" -v b="$end" 'BEGIN{printf "%.6f", (b-a)/1e9}'
}
if [ "$cores" -gt 1 ]; then
  scaling=(); ceiling=(); share=()
  for _ in $(seq "$runs"); do
    one=$(wall ${cmd[tw1]})
    all=$(wall ${cmd[twN]})
    # shellcheck disable=SC2016 # $0 is bash -c's, expanded there
    together=$(wall bash -c 'for _ in $(seq "$1"); do $0 >/dev/null 2>&1 & done; wait' "${cmd[tw1]}" "$cores")
    scaling+=("$(awk -v a="$one" -v b="$all" 'BEGIN{printf "%.4f", (b>0)?a/b:0}')")
    ceiling+=("$(awk -v a="$one" -v t="$together" -v n="$cores" 'BEGIN{printf "%.4f", (t>0)?n*a/t:0}')")
    # (one/all) / (cores*one/together): the one-thread time cancels out.
    share+=("$(awk -v b="$all" -v t="$together" -v n="$cores" 'BEGIN{printf "%.4f", (b>0)?t/(n*b):0}')")
  done
  echo "--threads $cores vs --threads 1, $runs interleaved rounds: $(printf '%s\n' "${scaling[@]}" | median_quartiles)"
  echo "machine ceiling, $cores one-thread runs at once vs one alone (same rounds): $(printf '%s\n' "${ceiling[@]}" | median_quartiles)"
  echo "thread scaling as a share of that ceiling, per round: $(printf '%s\n' "${share[@]}" | median_quartiles | sed 's/x//')"
fi
