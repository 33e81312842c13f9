//! Issue #9 (flood): a flood of distinct one-packet flows past `--max-flows` is evicted and
//! counted, every packet stays accounted for, and long flows that keep sending survive whole.
//! The memory figure itself is measured by `benches/flood.sh` (README, "Memory").

use std::net::IpAddr;

use serde_json::Value;
use tunnelwatch::synth::flood::{self, FloodConfig, FloodSummary};
use tunnelwatch::synth::pcap_writer::PcapWriter;

use crate::util::{run, scratch, stderr, stdout};

const FLOOD_FLOWS: u64 = 50_000;
const MAX_FLOWS: u64 = 1_000;

fn flood_capture(dir: &std::path::Path) -> (std::path::PathBuf, FloodSummary) {
    let path = dir.join("flood.pcap");
    let mut pcap = PcapWriter::new(Vec::new()).unwrap();
    let summary = flood::write(
        &FloodConfig {
            flood_flows: FLOOD_FLOWS,
            long_tcp: 4,
            long_udp: 4,
            interval: 100,
            seed: 3,
        },
        &mut pcap,
    )
    .unwrap();
    std::fs::write(&path, pcap.into_inner()).unwrap();
    (path, summary)
}

fn count(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no count {key}: {summary}"))
}

#[test]
fn flood_past_the_cap_is_evicted_counted_and_spares_long_flows() {
    let dir = scratch("flood");
    let (pcap, generated) = flood_capture(&dir);
    let cap = MAX_FLOWS.to_string();
    let out = run(&[
        "flows",
        pcap.to_str().unwrap(),
        "--max-flows",
        &cap,
        "--format",
        "jsonl",
        "-q",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = stderr(&out)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON summary on stderr");

    // Packets add up, nothing skipped.
    assert_eq!(count(&summary, "packets_read"), generated.packets);
    assert_eq!(
        count(&summary, "packets_in_flows") + count(&summary, "packets_skipped"),
        count(&summary, "packets_read")
    );
    assert_eq!(count(&summary, "packets_skipped"), 0);

    // Every flood 5-tuple is one flow, each long flow exactly one (none was evicted and
    // re-created), and the table never held more than the cap.
    let long = generated.long_flows.len() as u64;
    assert_eq!(count(&summary, "flows"), FLOOD_FLOWS + long);
    // The peak is of all tables together (on several threads each holds a share of the cap).
    let peak = count(&summary, "peak_live_flows");
    assert!(
        peak <= MAX_FLOWS && peak > MAX_FLOWS * 9 / 10,
        "peak of {peak} live flows at a cap of {MAX_FLOWS}"
    );
    let evicted = count(&summary, "flows_evicted");
    assert!(
        evicted >= FLOOD_FLOWS + long - MAX_FLOWS,
        "{evicted} evictions for {FLOOD_FLOWS} flood flows past a cap of {MAX_FLOWS}"
    );

    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len() as u64, FLOOD_FLOWS + long);
    let packets_in_rows: u64 = rows
        .iter()
        .map(|r| count(r, "packets_c2s") + count(r, "packets_s2c"))
        .sum();
    assert_eq!(packets_in_rows, generated.packets);
    for l in &generated.long_flows {
        let matching: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                r["client_ip"]
                    .as_str()
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    == Some(l.client.ip())
                    && r["client_port"] == l.client.port()
                    && r["server_ip"]
                        .as_str()
                        .and_then(|s| s.parse::<IpAddr>().ok())
                        == Some(l.server.ip())
                    && r["server_port"] == l.server.port()
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "long flow {l:?} is one flow: {matching:?}"
        );
        let row = matching[0];
        assert_eq!(row["transport"], l.transport);
        assert_eq!(
            (count(row, "packets_c2s"), count(row, "packets_s2c")),
            (l.packets_c2s, l.packets_s2c),
            "long flow {l:?} kept every packet"
        );
    }

    // The one-screen summary reports the evictions too. On several threads the tables
    // share the cap by hash bucket, and the buckets move with the load, so which flows are
    // still live at the end (ended, not evicted) can differ by a few from run to run: the
    // bound holds for every run.
    let text = run(&[
        "flows",
        pcap.to_str().unwrap(),
        "--max-flows",
        &cap,
        "--format",
        "csv",
    ]);
    assert!(text.status.success(), "{}", stderr(&text));
    let summary_text = stderr(&text);
    let evicted_text: u64 = summary_text
        .split(" evicted at the cap")
        .next()
        .and_then(|before| before.rsplit(['(', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no eviction count in the terminal summary: {summary_text}"));
    assert!(
        evicted_text >= FLOOD_FLOWS + long - MAX_FLOWS,
        "terminal summary: {summary_text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
