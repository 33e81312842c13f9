//! Detection checked against the generator's truth (issues #4 and #5): each scenario shape is
//! written as a TOML scenario file, generated with `synth --scenario`, analysed with
//! `analyze --window 1h`, and the alerts are compared with the truth in `events.json` and
//! `truth.csv`: block onset within one window, VPN surge onset within two windows of the
//! surge's span (below), no alert at all without a block, and an outage never called a block.
//! Two seeds per shape, four for block-slow-ramp. The table of lags is printed (`cargo test
//! --test e2e scenarios -- --nocapture`).
//!
//! The surge's onset is a span on the wire, not an instant: from the first circumvention flow
//! of a host that adopted after the block (truth.csv) to the first flow of the second such host.
//! One host is not yet a surge (two hosts is the least any detector counts,
//! `MIN_SHARE_EXCESS_HOSTS` in src/cli/detection.rs: the issue's "minimum absolute counts so tiny
//! numbers do not alarm"), yet a detector that dates the shift back to its change point rightly
//! names the first adopter's window. A detected onset within two windows of that span passes, as
//! NAB scores a detection anywhere in a labelled anomaly window. In a quick surge the span is a
//! few minutes; in block-slow-ramp seed 9 it is six and a half hours (a lone adopter at 19:02 UTC,
//! the next at 01:32), in seed 5 three (the detector names the first adopter's window).
//!
//! Nor is the onset the earliest adoption time in events.json: that is when the synthetic user
//! made up their mind, at any hour of the day, and nothing of it is on the wire until their next
//! session, which after a night-time decision comes hours later (block-slow-ramp seed 1: first
//! decision 21:54 UTC, 02:54 in Pakistan; first circumvention flow of any adopter 00:46 UTC).
//! The table prints the lag from the decision (`adopt`), from the first adopter's first flow
//! (`first`) and from the second's (`second`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::util::{run, scratch, stderr, synth_scenario};

const WINDOW_SECS: i64 = 3_600;
const WINDOW_NANOS: i64 = WINDOW_SECS * 1_000_000_000;

/// Small and busy: 60 hosts over two and a half days from midnight PKT, the block (or outage)
/// at 20:00 PKT on the second evening (hour 44), so the baseline has a day and a half to learn.
const COMMON: &str = "\
[capture]
start = 2024-02-15T19:00:00Z
days = 2.5
[traffic]
control_weight = 4.0
[population]
hosts = 60
sessions_per_day = 30.0
platform_user_share = 0.6
platform_session_share = 0.35
[adoption]
share = 0.4
tunnel_use = 0.8
tunnel_median_seconds = 120.0
";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// No alert of any kind.
    Nothing,
    /// A suspected block within one window of the truth, and a surge within `surge_windows`.
    Block { surge_windows: i64 },
    /// An outage alert, and no suspected block.
    Outage,
}

struct Shape {
    name: &'static str,
    /// Block / outage tables (times in hours after the capture start: 44 = 20:00 PKT, day 2).
    tables: &'static str,
    expect: Expect,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "no-block",
        tables: "",
        expect: Expect::Nothing,
    },
    Shape {
        name: "block-surge",
        tables: "[block]\nstart = 44\nmethods = [\"reset_after_client_hello\", \"dns_nxdomain\"]\n\
                 [adoption.mix]\ntor = 0.07\n",
        expect: Expect::Block { surge_windows: 2 },
    },
    Shape {
        name: "block-slow-ramp",
        // Adoption spread over days: the first adopters are a host or two an hour.
        tables: "[block]\nstart = 44\nmethods = [\"reset_after_client_hello\", \"dns_nxdomain\"]\n",
        expect: Expect::Block { surge_windows: 2 },
    },
    Shape {
        name: "short-block",
        tables: "[block]\nstart = 44\nend = 47\nmethods = [\"reset_after_client_hello\", \"dns_nxdomain\"]\n",
        expect: Expect::Block { surge_windows: 2 },
    },
    Shape {
        name: "block-throttle",
        tables: "[block]\nstart = 44\nmethods = [\"throttle\"]\nthrottle_bytes_per_s = 1500\n",
        expect: Expect::Block { surge_windows: 2 },
    },
    Shape {
        name: "outage",
        tables: "[outage]\nstart = 44\nend = 47\n",
        expect: Expect::Outage,
    },
];

fn ramp_tables(name: &str) -> &'static str {
    match name {
        "block-slow-ramp" => "ramp_median_hours = 20.0\nramp_sigma = 0.6\n",
        _ => "ramp_median_hours = 1.0\nramp_sigma = 0.5\n",
    }
}

/// The scenario file of one shape and seed: COMMON with the shape's tables merged in (the
/// adoption ramp keys go into COMMON's [adoption] table). Based on the `no-block` preset, whose
/// keys left out here (traffic volume, VPN users before the block, tool mix...) are the
/// generator's defaults, not the committed sample's (tuned for its own size).
fn scenario_toml(shape: &Shape, seed: u64) -> String {
    let common = COMMON.replace(
        "[adoption]\n",
        &format!("[adoption]\n{}", ramp_tables(shape.name)),
    );
    format!(
        "base = \"no-block\"\nname = \"{}\"\nseed = {seed}\n{common}{}",
        shape.name, shape.tables
    )
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Onset of the first alert of `kinds` (on `metrics`, any if empty) starting at or after `from`.
fn first_onset(
    alerts: &[serde_json::Value],
    kinds: &[&str],
    metrics: &[&str],
    from: i64,
) -> Option<i64> {
    alerts
        .iter()
        .filter(|a| kinds.contains(&a["kind"].as_str().unwrap_or("")))
        .filter(|a| metrics.is_empty() || metrics.contains(&a["metric"].as_str().unwrap_or("")))
        .filter_map(|a| a["start_ts"].as_i64())
        .filter(|t| *t >= from)
        .min()
}

/// Families of circumvention flows in truth.csv (the others are `web` and `other`).
const CIRCUMVENTION_FAMILIES: &[&str] = &["vpn", "proxy", "tor", "obfuscated", "tunnel"];

/// Start (ns) of the first circumvention flow at or after adoption of each host in `adopted`
/// (host -> adoption time, µs), earliest first: the surge as it shows on the wire.
fn first_circumvention_flows(truth_csv: &str, adopted: &BTreeMap<i64, i64>) -> Vec<i64> {
    let mut lines = truth_csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let header: Vec<&str> = header.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(start), Some(host), Some(family)) = (col("start_us"), col("host"), col("family"))
    else {
        return Vec::new();
    };
    let mut first_per_host: BTreeMap<i64, i64> = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let parsed = (|| {
            let at: i64 = cells.get(start)?.parse().ok()?;
            let h: i64 = cells.get(host)?.parse().ok()?;
            let adopted_at = *adopted.get(&h)?;
            (at >= adopted_at && CIRCUMVENTION_FAMILIES.contains(cells.get(family)?))
                .then_some((h, at * 1_000))
        })();
        if let Some((h, at)) = parsed {
            let first = first_per_host.entry(h).or_insert(at);
            *first = (*first).min(at);
        }
    }
    let mut firsts: Vec<i64> = first_per_host.into_values().collect();
    firsts.sort_unstable();
    firsts
}

/// Windows from the detected onset `d` to the span `[first, second]` (0 inside it).
fn span_lag(d: Option<i64>, first: i64, second: i64) -> Option<i64> {
    let (lo, hi) = (lag(d, first)?, lag(d, second)?);
    Some(if lo < 0 {
        lo
    } else if hi > 0 {
        hi
    } else {
        0
    })
}

/// Seeds of `shape`: 1 and 2 (and, for block-slow-ramp, 5 and 9, the two seeds whose
/// detections sit at either end of the surge span), or `TW_SCENARIO_SEEDS` (`1-10` or
/// `3,5,8`) for a longer look (`TW_SCENARIO_SHAPES=block-slow-ramp,outage` picks shapes).
fn seeds(shape: &str) -> Vec<u64> {
    let Ok(spec) = std::env::var("TW_SCENARIO_SEEDS") else {
        return match shape {
            "block-slow-ramp" => vec![1, 2, 5, 9],
            _ => vec![1, 2],
        };
    };
    if let Some((a, b)) = spec.split_once('-') {
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
            return (a..=b).collect();
        }
    }
    spec.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Windows between the window holding the truth and the detected onset's window.
fn lag(detected: Option<i64>, truth: i64) -> Option<i64> {
    detected.map(|d| d.div_euclid(WINDOW_NANOS) - truth.div_euclid(WINDOW_NANOS))
}

fn fmt_ts(nanos: Option<i64>) -> String {
    nanos.map_or("-".into(), tunnelwatch::detect::format_ts)
}

#[test]
fn detection_matches_the_truth_of_each_scenario_shape() {
    let dir = scratch("scenarios");
    let mut table = String::from(
        "scenario          seed  what   truth onset          detected onset       lag (windows)\n",
    );
    let mut failures = Vec::new();
    let wanted = std::env::var("TW_SCENARIO_SHAPES").ok();
    for shape in SHAPES.iter().filter(|s| {
        wanted
            .as_deref()
            .is_none_or(|w| w.split(',').any(|n| n == s.name))
    }) {
        for seed in seeds(shape.name) {
            let stem = dir.join(format!("{}-{seed}", shape.name));
            let toml_path = stem.with_extension("toml");
            std::fs::write(&toml_path, scenario_toml(shape, seed)).unwrap();
            let pcap = stem.with_extension("pcap");
            synth_scenario(&toml_path, &pcap);
            let analysed = stem.with_extension("out");
            let out = run(&[
                "analyze",
                pcap.to_str().unwrap(),
                "--window",
                "1h",
                "-q",
                "--out",
                analysed.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "analyze {}: {}",
                shape.name,
                stderr(&out)
            );
            // Ten seeds of every shape are gigabytes of captures: the scenario file beside it
            // regenerates the same capture (fixed seed), so only the analysis is kept.
            let _ = std::fs::remove_file(&pcap);
            let events = json(&stem.with_extension("events.json"));
            let doc = json(&analysed.join("alerts.json"));
            let alerts = doc["alerts"].as_array().cloned().unwrap_or_default();
            let capture_start = events["block"]["start_unix"]
                .as_i64()
                .or(events["outage"]["start_unix"].as_i64())
                .map(|s| s * 1_000_000_000);
            let mut row = |what: &str, truth: Option<i64>, detected: Option<i64>| {
                let l = truth.and_then(|t| lag(detected, t));
                let _ = writeln!(
                    table,
                    "{:<17} {seed:<5} {what:<6} {:<20} {:<20} {}",
                    shape.name,
                    fmt_ts(truth),
                    fmt_ts(detected),
                    l.map_or("-".into(), |l| l.to_string())
                );
                l
            };
            let tag = format!("{} seed {seed}", shape.name);
            match shape.expect {
                Expect::Nothing => {
                    row(
                        "any",
                        None,
                        alerts.first().and_then(|a| a["start_ts"].as_i64()),
                    );
                    if !alerts.is_empty() {
                        failures.push(format!("{tag}: alerts without a block: {alerts:?}"));
                    }
                }
                Expect::Block { surge_windows } => {
                    let truth = capture_start.unwrap();
                    // Anything from a window before the truth on counts as this event.
                    let from = truth - WINDOW_NANOS;
                    let block = first_onset(&alerts, &["BlockSuspected"], &[], from);
                    match row("block", Some(truth), block) {
                        Some(l) if l.abs() <= 1 => {}
                        other => failures.push(format!("{tag}: block lag {other:?}")),
                    }
                    let adopted: BTreeMap<i64, i64> = events["adoptions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|a| a["baseline"] == false)
                        .filter_map(|a| Some((a["host"].as_i64()?, a["at_us"].as_i64()?)))
                        .collect();
                    let decided = adopted.values().min().map(|us| us * 1_000);
                    let truth_csv = std::fs::read_to_string(stem.with_extension("truth.csv"))
                        .expect("truth.csv");
                    let firsts = first_circumvention_flows(&truth_csv, &adopted);
                    let surge = first_onset(
                        &alerts,
                        &["LevelShiftUp", "Spike"],
                        &[
                            "circumvention_host_share",
                            "circumvention_hosts",
                            "new_adopters",
                        ],
                        from,
                    );
                    row("adopt", decided, surge);
                    row("first", firsts.first().copied(), surge);
                    row("second", firsts.get(1).copied(), surge);
                    match firsts.get(..2) {
                        Some(&[first, second]) => match span_lag(surge, first, second) {
                            Some(l) if l.abs() <= surge_windows => {}
                            other => failures.push(format!("{tag}: surge lag {other:?}")),
                        },
                        _ => failures.push(format!("{tag}: fewer than two hosts adopted")),
                    }
                    let early = alerts
                        .iter()
                        .filter(|a| a["start_ts"].as_i64().is_some_and(|t| t < from))
                        .count();
                    if early > 0 {
                        failures.push(format!("{tag}: {early} alerts before the block"));
                    }
                    if shape.name == "block-throttle" {
                        let dominant = alerts
                            .iter()
                            .filter(|a| a["kind"] == "BlockSuspected")
                            .flat_map(|a| a["evidence"].as_array().cloned().unwrap_or_default())
                            .any(|e| e[0] == "dominant_failure" && e[1] == "throttled");
                        if !dominant {
                            failures.push(format!("{tag}: throttling not the dominant failure"));
                        }
                    }
                }
                Expect::Outage => {
                    let truth = capture_start.unwrap();
                    let outage = first_onset(&alerts, &["Outage"], &[], truth - WINDOW_NANOS);
                    match row("outage", Some(truth), outage) {
                        Some(l) if l.abs() <= 1 => {}
                        other => failures.push(format!("{tag}: outage lag {other:?}")),
                    }
                    let blocks = first_onset(&alerts, &["BlockSuspected"], &[], 0);
                    row("block", None, blocks);
                    if blocks.is_some() {
                        failures.push(format!("{tag}: the outage was called a block"));
                    }
                }
            }
        }
    }
    println!("{table}");
    assert!(failures.is_empty(), "{table}\n{failures:#?}");
}

#[test]
fn bad_scenario_files_name_the_field() {
    let dir = scratch("scenario-errors");
    let path = dir.join("scenario.toml");
    std::fs::write(
        &path,
        "[block]\nstart = 44\nmethods = [\"drop\", \"dnss\"]\n",
    )
    .unwrap();
    let out = run(&[
        "synth",
        "--scenario",
        path.to_str().unwrap(),
        "--out",
        dir.join("x.pcap").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("scenario.toml: block.methods[1]: unknown method \"dnss\" (expected dns_nxdomain, dns_bogus, reset_after_client_hello, drop, throttle)"),
        "{err}"
    );
    assert!(!dir.join("x.pcap").exists());
}

#[test]
fn printed_presets_generate_the_same_capture() {
    let dir = scratch("scenario-print");
    let out = run(&["synth", "--print-preset", "pk-x-2024-small"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let toml_path = dir.join("p.toml");
    std::fs::write(&toml_path, &out.stdout).unwrap();
    let gen = |args: &[&str], name: &str| {
        let path = dir.join(name);
        let mut all = vec![
            "synth",
            "--hosts",
            "15",
            "--days",
            "0.5",
            "--out",
            path.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(path).unwrap()
    };
    let a = gen(&["--preset", "pk-x-2024-small"], "a.pcap");
    let b = gen(&["--scenario", toml_path.to_str().unwrap()], "b.pcap");
    assert!(a == b, "the printed preset is the preset");
}
