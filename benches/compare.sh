#!/usr/bin/env bash
# Side-by-side throughput on one capture, in one run (compare ratios, not absolute figures):
# tunnelwatch (1 thread and all threads), a bare record walk, and the peers when installed:
# ndpiReader (libndpi-bin), tshark -q, tcpdump -w /dev/null.
# usage: benches/compare.sh CAPTURE [RUNS=3]
# Prints packets/s, MB/s and peak RSS per tool (median of RUNS) and the ratio to ndpiReader,
# then the thread scaling as the median ratio of RUNS interleaved one-thread/all-thread pairs.
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

# Thread scaling from interleaved pairs (one thread, then all threads, RUNS times): on a shared
# VM the speed drifts between the blocks of runs above, and a ratio of two medians taken minutes
# apart inherits that drift; the median of per-pair ratios does not.
if [ "$cores" -gt 1 ]; then
  ratios=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -o "$tfile" -f "%e" ${cmd[tw1]} >/dev/null 2>&1 || true
    one=$(tail -1 "$tfile")
    /usr/bin/time -o "$tfile" -f "%e" ${cmd[twN]} >/dev/null 2>&1 || true
    all=$(tail -1 "$tfile")
    ratios+=("$(awk -v a="$one" -v b="$all" 'BEGIN{printf "%.3f", (b>0)?a/b:0}')")
  done
  printf '%s\n' "${ratios[@]}" | sort -g | awk -v n="$cores" '{r[NR]=$1} END{q3=int(3*NR/4)+1; if (q3>NR) q3=NR; printf "--threads %s vs --threads 1, %d interleaved pairs: median %.2fx (quartiles %.2f-%.2f)\n", n, NR, r[int((NR+1)/2)], r[int(NR/4)+1], r[q3]}'
fi
