//! The commands end to end: flows formats, analyze outputs, explain, inputs, pipes.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::util::*;

#[test]
fn flows_jsonl_has_every_documented_key() {
    let out = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "jsonl",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "two UDP conversations in the fixture");
    for row in &rows {
        for key in tunnelwatch::cli::FLOW_COLUMNS {
            assert!(row.get(*key).is_some(), "missing key {key} in {row}");
        }
    }
    assert_eq!(rows[0]["packets_c2s"], 2);
    assert_eq!(rows[0]["server_port"], 53);
    assert_eq!(rows[0]["protocol"], "unknown");
    assert_eq!(rows[0]["first_ts"], "2023-11-14T22:13:20.000000Z");
}

#[test]
fn flows_csv_has_header_and_rows() {
    let out = run(&[
        "flows",
        "-r",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "csv",
        "-q",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        tunnelwatch::cli::FLOW_COLUMNS.join(",")
    );
    assert_eq!(lines.count(), 2);
}

/// The `server_name` and `platform` columns: on the shipped sample, every flow named for X is
/// X's (the names the built-in list holds), flows of other names are not, and `--platforms`
/// adds a platform of one's own, by name and by prefix, in JSONL and CSV alike.
#[test]
fn flows_name_the_server_and_the_platform_it_belongs_to() {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
    let rows = flow_rows(&sample, &[]);
    let x_domains: Vec<String> = tunnelwatch::intel::platforms::built_in()
        .into_iter()
        .find(|p| p.name == "x")
        .expect("X is built in")
        .domains;
    let x_name = |name: &str| {
        x_domains
            .iter()
            .any(|d| name == d || name.ends_with(&format!(".{d}")))
    };
    let mut named_x = 0;
    for row in &rows {
        let name = row["server_name"].as_str().expect("a string");
        let platform = row["platform"].as_str().expect("a string");
        if x_name(name) {
            named_x += 1;
            assert_eq!(platform, "x", "{row}");
        } else if !name.is_empty() {
            assert_ne!(platform, "x", "{row}");
        }
    }
    assert!(named_x > 100, "the sample's X sessions: {named_x}");

    let dir = scratch("flows_platform_column");
    let defs = dir.join("platforms.txt");
    std::fs::write(&defs, "mine,false,x.com,\n").expect("write definitions");
    let rows = flow_rows(&sample, &["--platforms", defs.to_str().expect("utf-8")]);
    assert!(rows
        .iter()
        .filter(|r| r["server_name"] == "x.com")
        .all(|r| r["platform"] == "mine"));
    assert!(rows
        .iter()
        .any(|r| r["server_name"] == "api.x.com" && r["platform"] == "mine"));
    assert!(rows
        .iter()
        .any(|r| r["server_name"] == "pbs.twimg.com" && r["platform"] == "x"));

    let out = run(&[
        "flows",
        sample.to_str().expect("utf-8"),
        "--format",
        "csv",
        "-q",
        "--platforms",
        defs.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let at = |column: &str| header.iter().position(|c| *c == column).expect(column);
    let (name_at, platform_at) = (at("server_name"), at("platform"));
    // Rows of the sample hold no quoted commas before the evidence, the last column.
    let csv_mine = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[name_at] == "x.com")
        .inspect(|f| assert_eq!(f[platform_at], "mine", "{f:?}"))
        .count();
    assert_eq!(
        csv_mine,
        rows.iter().filter(|r| r["server_name"] == "x.com").count()
    );

    // `explain --protocol` selects by platform too, and says what the flow aimed at.
    let out = run(&[
        "explain",
        sample.to_str().expect("utf-8"),
        "--protocol",
        "mine",
        "-q",
        "--platforms",
        defs.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let explained = text.matches("\nflow ").count() + usize::from(text.starts_with("flow "));
    assert_eq!(
        explained,
        csv_mine
            + rows
                .iter()
                .filter(|r| r["server_name"] == "api.x.com")
                .count()
    );
    assert!(
        text.contains("  target    server_name=x.com platform=mine attempt="),
        "{text}"
    );
}

/// The failure kinds of a platform attempt, in the order of the series and the report's table.
const FAILURE_KINDS: [&str; 5] = [
    "dns_failure",
    "reset_after_syn",
    "reset_after_client_data",
    "no_reply",
    "throttled",
];

/// The run summaries count attempts per platform as the flow rows and the series do: `flows`
/// (JSONL on 1 and 2 threads, the table) and `analyze` give the same `platforms` for the
/// shipped sample, with as many attempts per platform as rows carrying it, and X's attempts
/// and successes are the sums of its per-window series. `--watch` keeps the others out of
/// `analyze`'s, as out of its series; controls stay.
#[test]
fn summaries_count_platform_attempts_as_rows_and_series_do() {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
    let sample = sample.to_str().expect("utf-8");
    let flows_summary = |format: &str, threads: &str| {
        let out = run(&[
            "flows",
            sample,
            "--format",
            format,
            "--threads",
            threads,
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let last = stderr(&out).lines().last().unwrap_or("").to_string();
        let doc: serde_json::Value = serde_json::from_str(&last).expect("summary JSON");
        (doc["platforms"].clone(), stdout(&out))
    };
    let (platforms, rows) = flows_summary("jsonl", "1");
    let map = platforms.as_object().expect("platforms object");
    assert!(map.len() >= 5, "{platforms}");
    let mut per_platform = std::collections::BTreeMap::<String, u64>::new();
    for line in rows.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("row");
        let platform = row["platform"].as_str().expect("a string");
        if !platform.is_empty() {
            *per_platform.entry(platform.to_string()).or_default() += 1;
        }
    }
    for (name, counts) in map {
        assert_eq!(counts["attempts"].as_u64(), per_platform.get(name).copied());
        let results: u64 = ["success", "other"]
            .iter()
            .chain(FAILURE_KINDS.iter())
            .map(|k| counts[*k].as_u64().expect("a count"))
            .sum();
        assert_eq!(Some(results), counts["attempts"].as_u64(), "{name}");
    }
    assert_eq!(map.len(), per_platform.len());
    assert_eq!(map["wikipedia"]["control"], true);
    assert_eq!(map["x"]["control"], false);
    assert!(
        map["x"]["reset_after_client_data"].as_u64() > Some(10),
        "the block"
    );
    assert_eq!(flows_summary("jsonl", "2").0, platforms);
    assert_eq!(flows_summary("table", "1").0, platforms);

    let dir = scratch("summary_platforms");
    let analyze = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "analyze",
            sample,
            "--window",
            "1h",
            "--out",
            out.to_str().expect("utf-8"),
            "--json",
        ];
        args.extend_from_slice(extra);
        let run = run(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        let doc: serde_json::Value = serde_json::from_str(stdout(&run).trim()).expect("JSON");
        doc["platforms"].clone()
    };
    assert_eq!(analyze(&dir.join("all"), &[]), platforms);
    let text = std::fs::read_to_string(dir.join("all/report_data.json")).expect("report data");
    let data: serde_json::Value = serde_json::from_str(&text).expect("report data parses");
    let series_sum = |name: &str| -> u64 {
        data["series"]["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .find(|c| c["name"] == name)
            .expect(name)["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(|v| v.as_f64())
            .sum::<f64>() as u64
    };
    assert_eq!(
        Some(series_sum("platform_x_attempts")),
        map["x"]["attempts"].as_u64()
    );
    assert_eq!(
        Some(series_sum("platform_x_successes")),
        map["x"]["success"].as_u64()
    );
    // The report's table of totals, X's row first (the most attempts).
    let html = std::fs::read_to_string(dir.join("all/report.html")).expect("report.html");
    let table = html
        .split("<table id=\"platform-totals\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("a platform totals table");
    let x = &map["x"];
    let x_row = format!(
        "<tbody><tr><td>x</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
        x["attempts"], x["success"]
    );
    assert!(table.contains(&x_row), "{table}");
    let x_failures: String = FAILURE_KINDS
        .iter()
        .map(|k| format!("<td class=\"num\">{}</td>", x[*k]))
        .collect();
    assert!(table.contains(&(x_failures + "</tr>")), "{table}");

    let watched = analyze(&dir.join("watch"), &["--watch", "x"]);
    let names: Vec<&String> = watched.as_object().expect("object").keys().collect();
    assert!(
        names
            .iter()
            .all(|n| *n == "x" || map[n.as_str()]["control"] == true),
        "{names:?}"
    );
    assert_eq!(watched["x"], map["x"]);
    assert_eq!(watched["wikipedia"], map["wikipedia"]);

    // `explain --attempt failed` shows X's failed attempts, each saying how it failed.
    let out = run(&[
        "explain",
        sample,
        "--protocol",
        "x",
        "--attempt",
        "failed",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let failed: u64 = FAILURE_KINDS
        .iter()
        .map(|k| x[*k].as_u64().expect("a count"))
        .sum();
    let targets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  target "))
        .collect();
    assert_eq!(targets.len() as u64, failed, "{text}");
    assert!(targets.iter().all(|l| l.contains(" platform=x attempt=")
        && !l.ends_with("attempt=success")
        && !l.ends_with("attempt=other")));

    // The terminal summary has a line per platform, the most attempted first.
    let out = run(&["flows", sample, "--format", "jsonl"]);
    let err = stderr(&out);
    let x_line = format!("  platforms  x {} attempts, ", map["x"]["attempts"]);
    assert!(err.contains(&x_line), "{err}");
    assert!(err.contains("\n  controls   "), "{err}");
}

/// `--out FILE` writes what stdout would get, in the format its extension names unless
/// `--format` says otherwise, and leaves no hidden partial file behind.
#[test]
fn flows_out_file_holds_the_stdout_rows_in_the_extensions_format() {
    let dir = scratch("flows_out_file");
    let capture = fixture("three_udp.pcap");
    let capture = capture.to_str().unwrap();
    let printed = |format: &str| {
        let out = run(&["flows", capture, "--format", format, "-q"]);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    let written = |name: &str, extra: &[&str]| {
        let path = dir.join(name);
        let mut args = vec!["flows", capture, "-q", "-o", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{name}: rows went to stdout too");
        std::fs::read(&path).unwrap()
    };
    assert_eq!(written("rows.jsonl", &[]), printed("jsonl"));
    assert_eq!(written("rows.CSV", &[]), printed("csv"));
    assert_eq!(written("rows.txt", &[]), printed("table"));
    assert_eq!(
        written("rows.csv", &["--format", "jsonl"]),
        printed("jsonl")
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rows.CSV", "rows.csv", "rows.jsonl", "rows.txt"]);
    // `-` is stdout.
    let out = run(&["flows", capture, "-q", "-o", "-", "--format", "csv"]);
    assert_eq!(out.stdout, printed("csv"));
}

/// An `--out` path that cannot be written is refused before the run, naming the path.
#[test]
fn flows_out_file_in_a_missing_folder_is_a_clear_error() {
    let dir = scratch("flows_out_missing");
    let capture = fixture("three_udp.pcap");
    // Runs `flows` with `args`, expects exit code 1, returns stderr.
    let refused = |args: &[&str]| {
        let out = run(&[&["flows"], args].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        stderr(&out)
    };
    let target = dir.join("no/such/folder/rows.jsonl");
    let err = refused(&[capture.to_str().unwrap(), "-o", target.to_str().unwrap()]);
    assert!(
        err.contains(&format!("--out {}", target.display())),
        "{err}"
    );
    assert!(err.contains("cannot write there"), "{err}");
    assert!(!target.exists());
    // A folder is not a file to write.
    let err = refused(&[capture.to_str().unwrap(), "-o", dir.to_str().unwrap()]);
    assert!(err.contains("is a folder"), "{err}");
    // A run that fails after the file was opened leaves neither it nor its hidden partial.
    let err = refused(&["-o", dir.join("rows.jsonl").to_str().unwrap()]);
    assert!(err.contains("no input"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn summary_goes_to_stderr_not_stdout() {
    let out = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(stderr(&out).contains("tunnelwatch summary"));
    assert!(stderr(&out).contains("3 read, 3 in flows, 0 skipped"));
    assert!(stdout(&out).lines().all(|l| l.starts_with('{')));
}

#[test]
fn gzip_input_and_folder_walk() {
    let dir = scratch("gz");
    let raw = std::fs::read(fixture("three_udp.pcap")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&raw).unwrap();
    std::fs::write(dir.join("a.pcap.gz"), enc.finish().unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/b.pcap"), &raw).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a capture, not picked up").unwrap();
    let out = run(&["flows", dir.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 file(s): 2 complete"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("6 read, 6 in flows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn analyze_writes_flows_table_and_summary() {
    let dir = scratch("analyze");
    let out = run(&[
        "analyze",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["schema_version"], 1);
    assert_eq!(summary["packets_read"], 3);
    assert_eq!(summary["packets_in_flows"], 3);
    assert_eq!(summary["flows"], 2);
    assert_eq!(summary["files"][0]["status"], "complete");
    let table = if cfg!(feature = "polars-out") {
        "flows.parquet"
    } else {
        "flows.csv"
    };
    let bytes = std::fs::read(dir.join(table)).unwrap();
    if cfg!(feature = "polars-out") {
        assert_eq!(&bytes[..4], b"PAR1", "a Parquet file starts with its magic");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn head_on_a_pipe_prints_no_error() {
    let Some(shared) = shared("head_on_a_pipe_prints_no_error") else {
        return;
    };
    let capture = shared.join("corpus/dev/opera-vpn.pcapng");
    let mut child = Command::new(bin())
        .args(["flows", capture.to_str().unwrap(), "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // what `head` does after its lines
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("error"), "stderr: {err}");
    assert!(status.success(), "exit {status:?}, stderr: {err}");
}

#[test]
fn explain_needs_a_selector_and_prints_reasoning() {
    let f = fixture("three_udp.pcap");
    let out = run(&["explain", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--flow N, --protocol TOKEN or --attempt RESULT"));
    let out = run(&["explain", f.to_str().unwrap(), "--flow", "1", "-q"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("flow 1  udp 10.0.0.1:40001 -> 10.0.0.2:53"),
        "{text}"
    );
    assert!(text.contains("no detector matched"));
}

#[test]
fn no_input_is_a_clear_error() {
    let out = run(&["flows"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no input"), "{}", stderr(&out));
}

/// Issue 2: every dev and holdout capture reads completely, with the right record count.
#[test]
fn every_corpus_capture_is_read_completely() {
    let Some(shared) = shared("every_corpus_capture_is_read_completely") else {
        return;
    };
    let dev = shared.join("corpus/dev");
    let mut checked = 0;
    for row in read_labels(&dev.join("labels.csv")) {
        let path = dev.join(&row["file"]);
        let expected: u64 = row["packets"].parse().unwrap();
        check_capture(&path, expected);
        checked += 1;
    }
    let holdout = shared.join("corpus/holdout");
    let mut files: Vec<_> = std::fs::read_dir(&holdout)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let expected = count_records(&std::fs::read(&path).unwrap()) as u64;
        check_capture(&path, expected);
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} captures found");
}

fn check_capture(path: &std::path::Path, expected_packets: u64) {
    let dir = scratch("corpus");
    let out = run(&[
        "analyze",
        path.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}: exit {:?}: {}",
        path.display(),
        out.status.code(),
        stderr(&out)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["packets_read"],
        expected_packets,
        "{}",
        path.display()
    );
    assert!(
        summary["flows"].as_u64().unwrap() >= 1,
        "{}: no flow",
        path.display()
    );
    let in_flows = summary["packets_in_flows"].as_u64().unwrap();
    let skipped = summary["packets_skipped"].as_u64().unwrap();
    assert_eq!(
        in_flows + skipped,
        expected_packets,
        "{}: packets must add up",
        path.display()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn events_lists_the_calendar_and_user_events() {
    let dir = scratch("events");
    let file = dir.join("mine.csv");
    std::fs::write(
        &file,
        "XX,signal,2025-01-02T03:00:00Z,,dns,https://example.org/report\n",
    )
    .unwrap();
    let out = run(&["events", "--events", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("PK")
            && l.contains("2024-02-17T17:00:00Z")
            && l.contains("2025-05-07")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("XX") && l.contains("signal")),
        "{text}"
    );
    std::fs::write(&file, "XX,signal,2025-02-30,,dns,src\n").unwrap();
    let bad = run(&["events", "--events", file.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("line 1"), "{}", stderr(&bad));
}

#[test]
fn events_show_published_vpn_demand() {
    let dir = scratch("events-demand");
    let file = dir.join("mine.csv");
    std::fs::write(
        &file,
        "XX,signal,2025-01-02T03:00:00Z,,dns,https://example.org/report,,\
         250,\"+250% on 2 Jan\",Example,28-day average,https://example.org/demand\n",
    )
    .unwrap();
    let out = run(&["events", "--events", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("VPN demand")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("XX") && l.contains("+250% (Example)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("PK") && l.contains("+131% (Top10VPN)")),
        "{text}"
    );
    let json = run(&["events", "--json", "--events", file.to_str().unwrap()]);
    assert!(json.status.success(), "{}", stderr(&json));
    let events: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let mine = events
        .as_array()
        .and_then(|a| a.iter().find(|e| e["country"] == "XX"))
        .expect("user event in the JSON");
    assert_eq!(mine["vpn_demand"]["peak_percent"].as_f64(), Some(250.0));
    assert_eq!(mine["vpn_demand"]["source"], "https://example.org/demand");
    std::fs::write(
        &file,
        "XX,signal,2025-01-02,,dns,src,,lots,t,,,https://example.org/demand\n",
    )
    .unwrap();
    let bad = run(&["events", "--events", file.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("demand_percent"), "{}", stderr(&bad));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_progress_line_when_stderr_is_not_a_terminal() {
    let out = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let err = stderr(&out);
    assert!(
        !err.contains('\r') && !err.contains("ETA"),
        "progress drawn on a pipe: {err:?}"
    );
    assert!(!stdout(&out).contains("ETA"));
}

#[test]
fn json_summary_for_machines() {
    let dir = scratch("json");
    let out = run(&[
        "analyze",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("one JSON document on stdout");
    assert_eq!(doc["packets_read"], 3);
    assert!(
        !stderr(&out).contains("tunnelwatch summary"),
        "no table with --json"
    );
    let flows = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "jsonl",
        "--json",
    ]);
    let last = stderr(&flows).lines().last().unwrap_or("").to_string();
    let doc: serde_json::Value = serde_json::from_str(&last).expect("summary JSON on stderr");
    assert_eq!(doc["flows"], 2);
}

#[test]
fn user_endpoint_lists_label_relays_and_providers() {
    let dir = scratch("endpoints");
    let relays = dir.join("consensus.txt");
    std::fs::write(&relays, "network-status-version 3\nr relay1 AAAA BBBB 2024-02-17 12:00:00 10.0.0.2 9001 0\ns Fast Running Valid\n").unwrap();
    let out = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "jsonl",
        "-q",
        "--tor-relays",
        relays.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for line in stdout(&out).lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (row["protocol"].as_str(), row["confidence"].as_str()),
            (Some("tor"), Some("endpoint_list"))
        );
    }
    let ranges = dir.join("vpn.csv");
    std::fs::write(&ranges, "10.0.0.0/30,mullvad\n").unwrap();
    let out = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--format",
        "jsonl",
        "-q",
        "--endpoints",
        ranges.to_str().unwrap(),
    ]);
    let row: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["provider"].as_str(), row["family"].as_str()),
        (Some("mullvad"), Some("vpn"))
    );
    std::fs::write(&ranges, "not-a-prefix,mullvad\n").unwrap();
    let bad = run(&[
        "flows",
        fixture("three_udp.pcap").to_str().unwrap(),
        "--endpoints",
        ranges.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("vpn.csv: line 1"), "{}", stderr(&bad));
}

/// `detect DIR` re-runs detection from the series table analyze wrote, whichever format
/// (`--tables csv` or `json` leave no series.parquet): the same alerts as analyze's own.
#[test]
fn detect_reads_the_series_table_in_csv_or_json() {
    let dir = scratch("detect-csv");
    let scenario = dir.join("block.toml");
    std::fs::write(
        &scenario,
        "base = \"no-block\"\nname = \"detect-csv\"\nseed = 1\n\
         [capture]\nstart = 2024-02-15T19:00:00Z\ndays = 2.5\n\
         [population]\nhosts = 40\nsessions_per_day = 30.0\n\
         [adoption]\nshare = 0.4\nramp_median_hours = 1.0\n\
         [block]\nstart = 44\nmethods = [\"dns_nxdomain\"]\n",
    )
    .unwrap();
    let pcap = dir.join("block.pcap");
    synth_scenario(&scenario, &pcap);
    for format in ["csv", "json"] {
        let analysed = dir.join(format!("out-{format}"));
        let out = run(&[
            "analyze",
            pcap.to_str().unwrap(),
            "--window",
            "1h",
            "-q",
            "--tables",
            format,
            "--out",
            analysed.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(analysed.join(format!("series.{format}")).is_file());
        assert!(!analysed.join("series.parquet").exists());
        let alerts = |dir: &std::path::Path| {
            let text = std::fs::read_to_string(dir.join("alerts.json")).unwrap();
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            doc["alerts"].clone()
        };
        let by_analyze = alerts(&analysed);
        assert!(
            by_analyze.as_array().is_some_and(|a| !a.is_empty()),
            "the block raises alerts: {by_analyze}"
        );
        std::fs::remove_file(analysed.join("alerts.json")).unwrap();
        let out = run(&["detect", analysed.to_str().unwrap()]);
        assert!(out.status.success(), "detect on {format}: {}", stderr(&out));
        assert_eq!(alerts(&analysed), by_analyze, "{format}");
    }
    // A folder without any series table names the file it looked for.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&["detect", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("series.parquet"), "{}", stderr(&out));
}
