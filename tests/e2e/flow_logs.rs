//! Flow logs in tunnelwatch's own schema replayed through `analyze --flow-log`: the flows
//! table `analyze` wrote (Parquet) and the CSV `flows --format csv` prints come back with the
//! same flows and labels.

use std::path::Path;

use crate::util::{run, scratch, stderr};

fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap")
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json parses")
}

/// The `platform_x_attempts` series of the report data in `dir`, window by window (written by
/// every build, with polars or without).
fn platform_x_attempts(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("report_data.json")).expect("report_data.json");
    let data: serde_json::Value = serde_json::from_str(&text).expect("report_data.json parses");
    let column = data["series"]["columns"]
        .as_array()
        .expect("series columns")
        .iter()
        .find(|c| c["name"] == "platform_x_attempts")
        .expect("an X column")["values"]
        .as_array()
        .expect("values")
        .clone();
    assert!(
        column.iter().any(|v| v.as_f64().is_some_and(|v| v > 0.0)),
        "X attempts in the sample"
    );
    column
}

fn analyze(args: &[&str]) -> std::process::Output {
    let mut all = vec!["analyze", "--window", "1h", "-q"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(out.status.success(), "analyze {args:?}: {}", stderr(&out));
    out
}

/// Runs `analyze --flow-log log`, which must fail; returns its stderr.
fn refused_flow_log(log: &Path, out: &Path) -> String {
    let out = run(&[
        "analyze",
        "--flow-log",
        log.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "-q",
    ]);
    assert!(
        !out.status.success(),
        "{} taken as a flow log",
        log.display()
    );
    stderr(&out)
}

#[test]
fn archived_flow_tables_replay_with_the_same_flows_and_labels() {
    let dir = scratch("flow-logs");
    let original = dir.join("original");
    let sample = sample();
    analyze(&[
        sample.to_str().expect("utf-8"),
        "--out",
        original.to_str().expect("utf-8"),
    ]);
    let expected = summary(&original);
    assert!(expected["flows"].as_u64().unwrap_or(0) > 100, "{expected}");

    // The CSV that `flows --format csv` prints.
    let csv = run(&[
        "flows",
        sample.to_str().expect("utf-8"),
        "--format",
        "csv",
        "-q",
    ]);
    assert!(csv.status.success(), "{}", stderr(&csv));
    let csv_path = dir.join("flows.csv");
    std::fs::write(&csv_path, &csv.stdout).expect("write csv");

    // The same CSV as written before the `server_name` and `platform` columns: the names come
    // back from the archived evidence.
    let older = crate::util::without_name_columns(&String::from_utf8_lossy(&csv.stdout));
    let older_path = dir.join("flows-before-server-name.csv");
    std::fs::write(&older_path, older).expect("write older csv");

    let mut logs = vec![csv_path, older_path];
    let parquet = original.join("flows.parquet");
    if parquet.is_file() {
        logs.push(parquet);
    } else {
        eprintln!("flows.parquet not written (build without polars-out): CSV only");
    }
    for (i, log) in logs.iter().enumerate() {
        let replay = dir.join(format!("replay{i}"));
        analyze(&[
            "--flow-log",
            log.to_str().expect("utf-8"),
            "--out",
            replay.to_str().expect("utf-8"),
        ]);
        let got = summary(&replay);
        assert_eq!(got["flows"], expected["flows"], "{}", log.display());
        assert_eq!(got["protocols"], expected["protocols"], "{}", log.display());
        // Attempts per platform and result over the run, and X's window by window.
        assert_eq!(got["platforms"], expected["platforms"], "{}", log.display());
        // The flows' archived server names tell their platforms as on the wire: the X attempts
        // of every window are the same.
        assert_eq!(
            platform_x_attempts(&replay),
            platform_x_attempts(&original),
            "{}",
            log.display()
        );
    }

    // A Parquet table that is not a flow table (the per-host table) is refused, not read as
    // an empty log.
    let hosts = original.join("hosts.parquet");
    if hosts.is_file() {
        let err = refused_flow_log(&hosts, &dir.join("hosts-replay"));
        assert!(err.contains("column"), "{err}");
    }
}

#[test]
fn a_flow_log_without_the_required_columns_is_refused_by_name() {
    let dir = scratch("flow-logs-bad");
    let path = dir.join("bad.csv");
    std::fs::write(&path, "first_ts,last_ts,transport,client_ip\n2024-01-01 00:00:00,2024-01-01 00:00:01,udp,10.0.0.1\n")
        .expect("write");
    // Not a tunnelwatch table, so it is tried as nfdump CSV, which names what it misses.
    let err = refused_flow_log(&path, &dir.join("o"));
    assert!(err.contains("bad.csv"), "{err}");
}
