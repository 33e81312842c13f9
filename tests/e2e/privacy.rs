//! `analyze --anonymize`: no monitored-host address survives in any output file, and the
//! mapping keeps hosts distinct (one anonymised address per real one).

use std::collections::HashSet;
use std::path::Path;

use crate::util::{run, scratch, stderr, stdout};

fn is_private(ip: &str) -> bool {
    let Ok(std::net::IpAddr::V4(a)) = ip.parse() else {
        return ip.starts_with("fd") || ip.starts_with("fc");
    };
    let o = a.octets();
    o[0] == 10
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 172 && (16..32).contains(&o[1]))
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

#[test]
fn anonymized_runs_leave_no_host_address_in_any_output() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
    let sample = sample.to_str().expect("utf-8");
    // The real host addresses, from the plain flow rows.
    let flows = run(&["flows", sample, "--format", "jsonl", "-q"]);
    assert!(flows.status.success(), "{}", stderr(&flows));
    let mut hosts = HashSet::new();
    let mut raw_clients = HashSet::new();
    for line in stdout(&flows).lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("jsonl");
        raw_clients.insert(row["client_ip"].as_str().unwrap_or_default().to_string());
        for key in ["client_ip", "server_ip"] {
            if let Some(ip) = row[key].as_str().filter(|ip| is_private(ip)) {
                hosts.insert(ip.to_string());
            }
        }
    }
    assert!(hosts.len() > 10, "the sample has many hosts");

    let out = scratch("privacy");
    let run_out = run(&[
        "analyze",
        sample,
        "--window",
        "1h",
        "--anonymize",
        "a secret key",
        "--tables",
        "csv,parquet",
        "--out",
        out.to_str().expect("utf-8"),
        "-q",
    ]);
    assert!(run_out.status.success(), "{}", stderr(&run_out));

    // Text outputs: no real host address anywhere (as a whole token).
    for entry in std::fs::read_dir(&out).expect("out dir") {
        let path = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // Parquet: checked below through its columns.
        };
        for host in &hosts {
            let leaked = text.match_indices(host.as_str()).any(|(i, _)| {
                let before = text[..i].chars().last();
                let after = text[i + host.len()..].chars().next();
                let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_ascii_digit() || c == '.');
                boundary(before) && boundary(after)
            });
            assert!(!leaked, "{host} appears in {}", path.display());
        }
    }
    // The flows table: anonymised, one-to-one.
    let parquet = out.join("flows.parquet");
    if parquet.is_file() {
        let (names, rows) =
            tunnelwatch::stats::read_parquet_as_text(&parquet).expect("flows.parquet");
        let col = |n: &str| names.iter().position(|c| c == n).expect("column");
        let (c, s) = (col("client_ip"), col("server_ip"));
        let shown: HashSet<&str> = rows
            .iter()
            .flat_map(|r| [r[c].as_str(), r[s].as_str()])
            .collect();
        for host in &hosts {
            assert!(!shown.contains(host.as_str()), "{host} in flows.parquet");
        }
        // Prefix-preserving anonymisation is one-to-one: as many distinct clients as before.
        let clients: HashSet<&str> = rows.iter().map(|r| r[c].as_str()).collect();
        assert_eq!(clients.len(), raw_clients.len());
    }
}

#[test]
fn hashed_hosts_from_a_key_file_replace_every_host_address() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/pk-x-2024-small.pcap");
    let out = scratch("privacy-hash");
    let key = out.join("key");
    std::fs::write(&key, "a secret from a file\n").expect("key file");
    let run_out = run(&[
        "analyze",
        sample.to_str().expect("utf-8"),
        "--window",
        "1h",
        "--anonymise",
        key.to_str().expect("utf-8"),
        "--hash-hosts",
        "--tables",
        "csv",
        "--out",
        out.join("o").to_str().expect("utf-8"),
        "-q",
    ]);
    assert!(run_out.status.success(), "{}", stderr(&run_out));
    let hosts = std::fs::read_to_string(out.join("o/hosts.csv")).expect("hosts.csv");
    let mut lines = hosts.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = header
        .iter()
        .position(|c| *c == "host")
        .expect("host column");
    let mut n = 0;
    for line in lines {
        let host = line.split(',').nth(col).expect("host value");
        assert!(host.starts_with("fd"), "{host} is not a pseudonym");
        n += 1;
    }
    assert!(n > 0);
    // --hash-hosts without a key is a usage error.
    let bad = run(&[
        "analyze",
        sample.to_str().expect("utf-8"),
        "--hash-hosts",
        "-q",
    ]);
    assert!(!bad.status.success());
}
