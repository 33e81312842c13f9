#!/usr/bin/env bash
# Live capture on loopback: packets/s, kernel drops and peak memory of `tunnelwatch capture`
# while tcpreplay sends a capture onto `lo` as fast as it can, looped with new addresses each
# loop (--unique-ip), so every loop brings new flows and hosts.
#
# Usage: sudo benches/live.sh [CAPTURE] [LOOPS] [PPS]
#   CAPTURE  pcap to replay (default: samples/pk-x-2024-small.pcap)
#   LOOPS    times to send it (default: 20)
#   PPS      packets per second to send (default: as fast as tcpreplay can)
# Needs root (or CAP_NET_RAW), libpcap-dev and tcpreplay (Debian packages). Prints one line:
# packets sent, captured, kernel drops, the replay's packets/s, windows, late flows and peak RSS.
# Run it with two LOOPS values at one PPS to see that memory does not grow with the length of
# the run (more windows), only with the traffic of a window.
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:-samples/pk-x-2024-small.pcap}
loops=${2:-20}
rate=--topspeed
[ -n "${3:-}" ] && rate=--pps=$3
for tool in tcprewrite tcpreplay tcpdump; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install tcpreplay)" >&2; exit 2; }
done
# A target directory of its own, apart from the default build's (see compare.sh).
bin=target/bench-live
cargo build --release --features live --quiet --target-dir "$bin" --bin tunnelwatch
tw=$bin/release/tunnelwatch
tmp=$(mktemp -d)
trap 'touch "$tmp/stop"; rm -rf "$tmp"' EXIT
tag=02:00:00:00:00:7e
# IPv4 frames only (tcprewrite maps IPv4 addresses; IPv6 frames would not arrive), with
# loopback addresses and a tag MAC the capture filters on, so nothing else on lo is counted.
tcpdump -r "$capture" -w "$tmp/ipv4.pcap" ip 2>/dev/null
tcprewrite --infile="$tmp/ipv4.pcap" --outfile="$tmp/replay.pcap" --pnat=0.0.0.0/0:127.0.0.0/8 \
    --enet-dmac=$tag --enet-smac=02:00:00:00:01:00 --fixcsum
# One-second windows (frozen after the default revision horizon, here 3 windows): many
# windows in a short run, so the bench exercises
# the rotation that keeps a days-long capture flat.
/usr/bin/time -v -o "$tmp/time" "$tw" capture -i lo -f "ether dst $tag" --window 1s \
    --tcp-timeout 2 --udp-timeout 2 --tables parquet \
    --out "$tmp/out" --stop-file "$tmp/stop" -q &
pid=$!
sleep 2
replay=$(tcpreplay -i lo "$rate" --unique-ip --loop="$loops" "$tmp/replay.pcap" 2>&1)
sleep 2
touch "$tmp/stop"
wait "$pid"
sent=$(sed -n 's/.*Actual: \([0-9]*\) packets.*/\1/p' <<<"$replay")
pps=$(sed -n 's/.*Rated: [0-9.]* Bps, [0-9.]* Mbps, \([0-9.]*\) pps.*/\1/p' <<<"$replay")
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time")
python3 - "$tmp/out/capture.json" "$sent" "$pps" "$rss" "$loops" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
sent, pps, rss, loops = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
k = doc["kernel"]
print(f"loops {loops}: sent {sent} packets at {pps} pps; captured {doc['packets']}, "
      f"kernel dropped {k['dropped']} (interface {k['if_dropped']}); {doc['windows']} windows, "
      f"{doc['flows']} flows, {doc['late_flows']} late; peak RSS {rss / 1024:.1f} MB")
EOF
