//! Shared helpers: run the binary, find ../shared, make scratch folders, count records.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tunnelwatch")
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("the tunnelwatch binary runs")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `../shared` beside the repository, or None (with a message) when it is absent.
pub fn shared(what: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.join("corpus/dev/labels.csv").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {what}: ../shared is absent (CI always has it)");
        None
    }
}

/// A fresh scratch folder under target/ (removed first if it exists). Folders stay after the
/// run for inspection; the first call of a later run removes those of processes that are gone,
/// so they do not pile up over many runs.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-scratch");
    SWEPT.call_once(|| remove_stale_scratch(&root));
    let dir = root.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Removes scratch folders (`NAME-PID-N`) whose process no longer runs.
fn remove_stale_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Counts records by walking a capture's record headers, independently of the tool's reader:
/// classic pcap (either byte order) and pcapng (EPB, SPB, PB). Uncompressed input only.
pub fn count_records(bytes: &[u8]) -> usize {
    let u32_at = |b: &[u8], at: usize, be: bool| {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    match &bytes[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xa1, 0xb2, 0x3c, 0x4d] => {
            let be = bytes[0] == 0xa1;
            let mut at = 24;
            let mut n = 0;
            while at + 16 <= bytes.len() {
                let caplen = u32_at(bytes, at + 8, be) as usize;
                if at + 16 + caplen > bytes.len() {
                    break;
                }
                at += 16 + caplen;
                n += 1;
            }
            n
        }
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut at = 0;
            let mut be = false;
            let mut n = 0;
            while at + 12 <= bytes.len() {
                if bytes[at..at + 4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                    be = bytes[at + 8..at + 12] == [0x1a, 0x2b, 0x3c, 0x4d];
                }
                let block_type = u32_at(bytes, at, be);
                let len = u32_at(bytes, at + 4, be) as usize;
                if len < 12 || at + len > bytes.len() {
                    break;
                }
                if matches!(block_type, 2 | 3 | 6) {
                    n += 1;
                }
                at += len;
            }
            n
        }
        _ => 0,
    }
}

/// Rows of a simple CSV without quoted commas (labels.csv has none in the fields we read).
pub fn read_labels(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("labels.csv readable");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

/// `tunnelwatch flows CAPTURE --format jsonl -q EXTRA...`, asserted to succeed, as JSON rows.
pub fn flow_rows(capture: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "flows",
        capture.to_str().expect("UTF-8 path"),
        "--format",
        "jsonl",
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}: {}",
        capture.display(),
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `tunnelwatch synth --scenario SCENARIO --out PCAP`, asserted to succeed.
pub fn synth_scenario(scenario: &Path, pcap: &Path) {
    let out = run(&[
        "synth",
        "--scenario",
        scenario.to_str().expect("UTF-8 path"),
        "--out",
        pcap.to_str().expect("UTF-8 path"),
    ]);
    assert!(
        out.status.success(),
        "synth {}: {}",
        scenario.display(),
        stderr(&out)
    );
}

/// The tokens of flow rows as `../shared/tools/corpus_score.py` counts them: every protocol and
/// application (lower case), `vpn_service` for a named provider, `obfs` for an obfuscated flow.
pub fn scored_tokens(rows: &[serde_json::Value]) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for row in rows {
        for key in ["protocol", "application"] {
            if let Some(v) = row[key].as_str().filter(|v| !v.is_empty()) {
                found.insert(v.to_lowercase());
            }
        }
        if row["provider"].as_str().is_some_and(|p| !p.is_empty()) {
            found.insert("vpn_service".into());
        }
        if row["obfuscated"] == true {
            found.insert("obfs".into());
        }
    }
    found
}

/// A flow table of `flows --format csv` as written before its `server_name` and `platform`
/// columns. They come just before `evidence`, the last column, and no earlier field holds a
/// comma, so each line is cut at its commas.
pub fn without_name_columns(csv: &str) -> String {
    let header: Vec<&str> = csv.lines().next().unwrap_or("").split(',').collect();
    let name_at = header
        .iter()
        .position(|c| *c == "server_name")
        .expect("a server_name column");
    assert_eq!(
        header.get(name_at + 1..),
        Some(&["platform", "evidence"][..]),
        "the name columns come just before the evidence"
    );
    csv.lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(name_at + 3, ',').collect();
            let mut kept = fields[..name_at.min(fields.len())].to_vec();
            kept.extend(fields.get(name_at + 2));
            kept.join(",") + "\n"
        })
        .collect()
}
