//! Issue 3: labels on the real dev captures, scored like ../shared/tools/corpus_score.py.
//!
//! For each capture the tokens found (every flow's protocol and application, `vpn_service` for a
//! non-empty provider, `obfs` for obfuscated) must include the expected target tokens (recall),
//! and negative captures must get no target token at all.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::*;

/// Tokens that are not targets: ordinary protocols and placeholders.
const ORDINARY: &[&str] = &[
    "tls", "quic", "dns", "http", "stun", "dtls", "none", "unknown", "",
];

/// Recall floor over all expected target labels in dev; raised as detectors improve.
const MIN_RECALL: f64 = 0.95;

fn tokens(capture: &std::path::Path) -> BTreeSet<String> {
    scored_tokens(&flow_rows(capture, &[]))
}

#[test]
fn dev_corpus_labels() {
    let Some(shared) = shared("dev_corpus_labels") else {
        return;
    };
    let dev = shared.join("corpus/dev");
    let mut per_token: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut false_labels: BTreeMap<String, u32> = BTreeMap::new();
    let mut negative_failures = Vec::new();
    let (mut expected_total, mut hit_total) = (0u32, 0u32);
    for row in read_labels(&dev.join("labels.csv")) {
        let expected: BTreeSet<String> = row["expected_protocols"]
            .split(';')
            .filter(|t| !t.is_empty() && !ORDINARY.contains(t))
            .map(str::to_string)
            .collect();
        let found: BTreeSet<String> = tokens(&dev.join(&row["file"]))
            .into_iter()
            .filter(|t| !ORDINARY.contains(&t.as_str()))
            .collect();
        for t in &expected {
            let e = per_token.entry(t.clone()).or_default();
            e.0 += 1;
            expected_total += 1;
            if found.contains(t) {
                e.1 += 1;
                hit_total += 1;
            }
        }
        for t in found.difference(&expected) {
            *false_labels.entry(t.clone()).or_default() += 1;
        }
        if expected.is_empty() && !found.is_empty() {
            negative_failures.push(format!("{}: {:?}", row["file"], found));
        }
    }
    eprintln!(
        "{:<18} {:>8} {:>6} {:>7} {:>12}",
        "token", "expected", "found", "missed", "false_labels"
    );
    let all: BTreeSet<&String> = per_token.keys().chain(false_labels.keys()).collect();
    for t in all {
        let (e, f) = per_token.get(t).copied().unwrap_or((0, 0));
        eprintln!(
            "{t:<18} {e:>8} {f:>6} {:>7} {:>12}",
            e - f,
            false_labels.get(t).copied().unwrap_or(0)
        );
    }
    let recall = f64::from(hit_total) / f64::from(expected_total.max(1));
    eprintln!(
        "recall {recall:.3} ({hit_total}/{expected_total}); false-labelled negatives: {}",
        negative_failures.len()
    );
    assert!(
        negative_failures.is_empty(),
        "target labels on negative captures: {negative_failures:#?}"
    );
    assert!(
        recall >= MIN_RECALL,
        "recall {recall:.3} below the floor {MIN_RECALL}"
    );
}

/// Issue 3: the Mullvad capture's server, 198.54.131.98, is a relay address (`ipv4_addr_in`) in
/// Mullvad's published relay list, which is built in: its WireGuard flow gets provider `mullvad`
/// while the protocol stays the wire's; `--no-builtin-endpoints` takes the provider away.
#[test]
fn mullvad_relay_is_named_from_the_builtin_provider_list() {
    let Some(shared) = shared("mullvad_relay_is_named_from_the_builtin_provider_list") else {
        return;
    };
    let capture = shared.join("corpus/dev/mullvad_wireguard.pcap");
    let labels = |extra: &[&str]| flow_rows(&capture, extra);
    let rows = labels(&[]);
    let relay: Vec<_> = rows
        .iter()
        .filter(|r| r["server_ip"] == "198.54.131.98")
        .collect();
    assert!(!relay.is_empty(), "no flow to the relay: {rows:?}");
    for r in relay {
        assert_eq!(
            (
                r["protocol"].as_str(),
                r["provider"].as_str(),
                r["family"].as_str()
            ),
            (Some("wireguard"), Some("mullvad"), Some("vpn")),
            "{r}"
        );
        assert!(
            r["evidence"]
                .as_str()
                .is_some_and(|e| e.contains("; vpn_endpoint: endpoint_list=mullvad")),
            "{r}"
        );
    }
    for r in labels(&["--no-builtin-endpoints"]) {
        assert_eq!(r["provider"].as_str().unwrap_or_default(), "", "{r}");
        if r["server_ip"] == "198.54.131.98" {
            assert_eq!(r["protocol"].as_str(), Some("wireguard"), "{r}");
        }
    }
}

/// Named sessions on real traffic: the benchmark capture (nDPI's test captures, merged, ~8 000
/// flows of hundreds of protocols) holds one Ultrasurf session, seven connections of
/// Telegram's obfuscated MTProto and 95 of WhatsApp's chat protocol (8 of its old XMPP-based
/// one), and only those flows may be named so. One run of the capture serves every check.
#[test]
fn ultrasurf_telegram_and_whatsapp_sessions_in_the_benchmark_capture_are_named_and_nothing_else_is()
{
    let Some(shared) = shared("named sessions on the benchmark capture") else {
        return;
    };
    let capture = shared.join("bench/ndpi-mix.pcap.gz");
    let rows = flow_rows(&capture, &[]);
    let named: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["application"] == "ultrasurf" || r["protocol"] == "ultrasurf")
        .collect();
    assert_eq!(named.len(), 1, "{named:#?}");
    let flow = named[0];
    assert_eq!(flow["transport"], "tcp");
    assert_eq!(flow["family"], "proxy");
    assert!(flow["evidence"]
        .as_str()
        .is_some_and(|e| e.contains("preamble=cc1c30415ba43866")));

    // Platforms recognised by their own protocols: no vocabulary token (`unknown`), no
    // circumvention (the fully-encrypted test had labelled Telegram's and the old WhatsApp
    // sessions `obfuscated`), the platform in the evidence.
    let on_platform = |platform: &str| -> Vec<&serde_json::Value> {
        rows.iter()
            .filter(|r| {
                r["evidence"]
                    .as_str()
                    .is_some_and(|e| e.contains(&format!("platform={platform}")))
            })
            .collect()
    };
    let telegram = on_platform("telegram");
    assert_eq!(telegram.len(), 7, "{telegram:#?}");
    for flow in telegram {
        assert_eq!(
            (&flow["protocol"], &flow["family"]),
            (&"unknown".into(), &"other".into()),
            "{flow}"
        );
        // Each server's reply repeats the client's auth_key_id; each server is in the range
        // Telegram publishes (149.154.160.0/20).
        assert_eq!(flow["confidence"], "both_directions", "{flow}");
        assert_eq!(flow["platform"], "telegram", "{flow}");
        assert!(
            flow["evidence"]
                .as_str()
                .is_some_and(|e| e.starts_with("mtproto: ")),
            "{flow}"
        );
        assert!(
            flow["server_ip"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("149.154.167.")),
            "{flow}"
        );
    }
    let whatsapp = on_platform("whatsapp");
    // 95: every TCP stream of the capture whose client opens with `WA` or the edge-routing
    // prefix `ED 00 01`, counted with tshark; some write their first frame in the fourth
    // segment.
    assert_eq!(whatsapp.len(), 95, "{whatsapp:#?}");
    let mut old_protocol = 0;
    for flow in whatsapp {
        assert_eq!(
            (&flow["protocol"], &flow["family"]),
            (&"unknown".into(), &"other".into()),
            "{flow}"
        );
        let evidence = flow["evidence"].as_str().unwrap_or_default();
        assert!(evidence.starts_with("whatsapp: "), "{flow}");
        // Told by its protocol, though many of its servers sit in Facebook's prefixes.
        assert_eq!(flow["platform"], "whatsapp", "{flow}");
        if evidence.contains("version=1.5") {
            old_protocol += 1;
            assert_eq!(flow["confidence"], "both_directions", "{flow}");
        }
    }
    assert_eq!(old_protocol, 8);
}

/// Issue 7: output is the same for any thread count, on real captures too (the holdout check
/// found one whose time steps back by hours, which once split differently on two threads).
/// Every dev capture, as a whole folder run: one thread, two (reader and one worker), three
/// (two workers).
#[test]
fn dev_corpus_flows_are_the_same_on_any_thread_count() {
    let Some(shared) = shared("dev_corpus_flows_are_the_same_on_any_thread_count") else {
        return;
    };
    let dev = shared.join("corpus/dev");
    let dev = dev.to_str().expect("utf-8 path");
    // The flows and the JSON summary (counters, peak live flows) alike.
    let flows = |threads: &str| {
        let out = run(&[
            "flows",
            dev,
            "--format",
            "jsonl",
            "--threads",
            threads,
            "-q",
            "--json",
        ]);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&out)
        );
        let summary = stderr(&out);
        (out.stdout, summary)
    };
    let one = flows("1");
    let rows = one.0.iter().filter(|&&b| b == b'\n').count();
    assert!(rows > 400, "the dev corpus has some 500 flows, got {rows}");
    assert!(one.1.contains("\"peak_live_flows\""), "summary: {}", one.1);
    for threads in ["2", "3"] {
        let other = flows(threads);
        assert!(other.0 == one.0, "{threads} threads differ from one");
        assert_eq!(other.1, one.1, "{threads} threads: the summary differs");
    }
}

/// The dev captures' flows, and the benchmark mix of nDPI's captures, archived as `flows
/// --format csv` writes them (also without the `server_name` column, as before it existed) and
/// replayed through `analyze --flow-log`, give the capture's protocol counts and attempts per
/// platform and result: what the statistics read of a label (names, DNS answers, a platform
/// detector's verdict on a flow it leaves `unknown`) comes back from the archive, and the
/// payload estimated from the byte totals judges the same flows throttled.
#[test]
fn corpus_replayed_as_a_flow_table_gives_the_same_platform_attempts() {
    let Some(shared) = shared("corpus_replayed_as_a_flow_table_gives_the_same_platform_attempts")
    else {
        return;
    };
    let dir = scratch("corpus_replay");
    let summary = |args: &[&str]| {
        let mut all = vec!["analyze", "-q", "--json"];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&out)
        );
        let doc: serde_json::Value =
            serde_json::from_str(stdout(&out).trim()).expect("summary JSON");
        doc
    };
    let mut throttled = 0;
    for (name, input) in [
        ("dev", shared.join("corpus/dev")),
        ("mix", shared.join("bench/ndpi-mix.pcap.gz")),
    ] {
        let input = input.to_str().expect("utf-8");
        let out = |what: &str| dir.join(format!("{name}-{what}"));
        let captured = summary(&[input, "--out", out("capture").to_str().expect("utf-8")]);
        let csv = run(&["flows", input, "--format", "csv", "-q"]);
        assert!(
            csv.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&csv)
        );
        let text = String::from_utf8(csv.stdout).expect("utf-8");
        let older = without_name_columns(&text);
        for (table, bytes) in [("flows.csv", text.clone()), ("older.csv", older)] {
            let path = out(table);
            std::fs::write(&path, bytes).expect("write table");
            let replayed = summary(&[
                "--flow-log",
                path.to_str().expect("utf-8"),
                "--out",
                out(&format!("replay-{table}")).to_str().expect("utf-8"),
            ]);
            assert_eq!(replayed["flows"], captured["flows"], "{name} {table}");
            assert_eq!(
                replayed["protocols"], captured["protocols"],
                "{name} {table}"
            );
            assert_eq!(
                replayed["platforms"], captured["platforms"],
                "{name} {table}"
            );
        }
        let platforms = captured["platforms"].as_object().expect("platforms");
        assert!(
            platforms["whatsapp"]["attempts"].as_u64() > Some(50),
            "{name}: the WhatsApp sessions: {platforms:?}"
        );
        throttled += platforms
            .values()
            .filter_map(|p| p["throttled"].as_u64())
            .sum::<u64>();
    }
    assert!(throttled > 0, "throttled attempts in the mix");
}
