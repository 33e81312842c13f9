//! `-f/--filter` on capture files: the packets it leaves out are counted, a filter that cannot
//! be read stops the run before any file is read, and on the dev corpus the packets that reach
//! flows are exactly those tcpdump's own filter passes (where both read the same IP packets).

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn summary(capture: &Path, filter: &str) -> serde_json::Value {
    let out = run(&[
        "flows",
        capture.to_str().unwrap(),
        "-f",
        filter,
        "--format",
        "jsonl",
        "--json",
    ]);
    assert!(out.status.success(), "{filter}: {}", stderr(&out));
    serde_json::from_str(&stderr(&out)).expect("the --json summary")
}

#[test]
fn filtered_packets_are_counted_and_the_rest_make_flows() {
    let capture = fixture("three_udp.pcap");
    // The fixture: three UDP packets from 10.0.0.1 to port 53 of 10.0.0.2.
    let all = summary(&capture, "udp dst port 53 and src host 10.0.0.1");
    assert_eq!(
        (
            all["packets_in_flows"].as_u64(),
            all["packets_filtered"].as_u64()
        ),
        (Some(3), Some(0))
    );
    assert_eq!(all["filter"], "udp dst port 53 and src host 10.0.0.1");
    let none = summary(&capture, "tcp or port 54");
    assert_eq!(
        (
            none["packets_in_flows"].as_u64(),
            none["packets_filtered"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(none["flows"], 0);
    let out = run(&["flows", capture.to_str().unwrap(), "-f", "not udp", "-q"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 1, "the table's header only");
}

#[test]
fn an_unreadable_filter_stops_the_run_with_the_reason() {
    let out = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "-f",
        "ether host 00:11:22:33:44:55",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`ether` is not supported"), "{err}");
    assert!(!err.contains("summary"), "no run: {err}");
}

/// Packets of `capture` that tcpdump's `filter` passes; `None` where tcpdump refuses the filter
/// for the capture's link type (no `vlan` on BSD loopback, say).
fn tcpdump_count(capture: &Path, filter: &str) -> Option<usize> {
    let out = Command::new("tcpdump")
        .args(["-nr", capture.to_str().unwrap(), filter])
        .output()
        .expect("tcpdump runs");
    out.status
        .success()
        .then(|| out.stdout.iter().filter(|&&b| b == b'\n').count())
}

/// On captures where tunnelwatch and tcpdump read the same IP packets (no VLAN or PPPoE
/// framing, which tcpdump's filters only see through with `vlan`/`pppoes`, and nothing
/// tunnelwatch skips but frames without IP), both pass the same packets.
#[test]
fn the_dev_corpus_filters_as_tcpdump_does() {
    let Some(shared) = shared("the_dev_corpus_filters_as_tcpdump_does") else {
        return;
    };
    if Command::new("tcpdump").arg("--version").output().is_err() {
        eprintln!("SKIPPED the_dev_corpus_filters_as_tcpdump_does: tcpdump is not installed");
        return;
    }
    let filters = [
        "tcp port 443",
        "udp and not port 53",
        "(ip or ip6) and (host 10.0.0.1 or net 192.168.0.0/16)",
        "tcp dst portrange 1-1024 or icmp",
        "ip6 and udp",
    ];
    let mut compared = 0;
    let mut entries: Vec<_> = std::fs::read_dir(shared.join("corpus/dev"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap")
        })
        .collect();
    entries.sort();
    for capture in entries {
        // One at a time: `vlan` changes what the rest of a pcap expression looks at. Refused
        // (`None`): a link type that has no such framing.
        let framed = ["vlan", "pppoes"]
            .iter()
            .any(|probe| tcpdump_count(&capture, probe).unwrap_or(0) > 0);
        if framed {
            continue;
        }
        for filter in filters {
            let s = summary(&capture, filter);
            let skipped_with_ip = s["skipped_by_reason"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(reason, _)| *reason != "not_ip")
                .map(|(_, n)| n.as_u64().unwrap())
                .sum::<u64>();
            if skipped_with_ip > 0 {
                continue;
            }
            let passed = tcpdump_count(&capture, filter).expect("tcpdump reads it");
            assert_eq!(
                s["packets_in_flows"].as_u64(),
                Some(passed as u64),
                "{}: {filter}",
                capture.display()
            );
            compared += 1;
        }
    }
    assert!(compared >= 200, "only {compared} comparisons");
}
